/* placeholder: module status is being written */
