/* placeholder: module http_client is being written */
