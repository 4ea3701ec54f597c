package notify_test

import "os"

var osGetpid = os.Getpid
