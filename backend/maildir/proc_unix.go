//go:build unix

package maildir

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func isCrossDevice(err error) bool { return errors.Is(err, syscall.EXDEV) }

// touch sets the mtime of an open file to now, whatever its name is by
// now. "Now" is the file system's own time (a NULL time: on NFS the
// server's clock), the clock other hosts' mtimes come from too.
func touch(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var terr error
	if err := rc.Control(func(fd uintptr) { terr = unix.Futimes(int(fd), nil) }); err != nil {
		return err
	}
	return terr
}
