/* placeholder: module ctl_explain is being written */
