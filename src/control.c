/* placeholder: module control is being written */
