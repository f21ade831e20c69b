/* placeholder: module template is being written */
