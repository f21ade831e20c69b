/* placeholder: module ctl_admin is being written */
