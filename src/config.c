/* placeholder: module config is being written */
