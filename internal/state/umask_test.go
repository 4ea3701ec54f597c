package state_test

import "syscall"

func sysUmask(m int) int { return syscall.Umask(m) }
