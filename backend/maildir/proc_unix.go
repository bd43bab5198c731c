//go:build unix

package maildir

import (
	"errors"
	"syscall"
)

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func isCrossDevice(err error) bool { return errors.Is(err, syscall.EXDEV) }
