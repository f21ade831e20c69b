/* placeholder: module executor is being written */
