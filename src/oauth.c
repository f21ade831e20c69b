/* placeholder: module oauth is being written */
