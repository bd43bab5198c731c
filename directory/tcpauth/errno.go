package tcpauth

import "syscall"

// errTooManyFiles is the accept error of a process out of file descriptors:
// retried after a pause, like a timeout, instead of stopping the server.
var errTooManyFiles error = syscall.EMFILE
