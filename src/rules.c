/* placeholder: module rules is being written */
