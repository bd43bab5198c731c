//go:build unix

package maildir

import (
	"errors"
	"os"
	"syscall"
	"time"
)

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func isCrossDevice(err error) bool { return errors.Is(err, syscall.EXDEV) }

// touch sets the mtime of an open file to now, whatever its name is by
// now.
func touch(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	tv := syscall.NsecToTimeval(time.Now().UnixNano())
	var terr error
	if err := rc.Control(func(fd uintptr) { terr = syscall.Futimes(int(fd), []syscall.Timeval{tv, tv}) }); err != nil {
		return err
	}
	return terr
}
