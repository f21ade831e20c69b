/* placeholder: module webhook is being written */
