/* placeholder: module ctl_users is being written */
