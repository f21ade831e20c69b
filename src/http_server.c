/* placeholder: module http_server is being written */
