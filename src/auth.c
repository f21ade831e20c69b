/* placeholder: module auth is being written */
