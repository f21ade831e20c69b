/* placeholder: module users_api is being written */
