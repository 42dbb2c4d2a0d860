package admin

import (
	"errors"
	"net"
	"os"
	"path/filepath"
)

// listenUnix0600 creates a Unix socket at path that nobody but the owner can ever connect to:
// it is bound inside a fresh 0700 directory next to path, made 0600, then renamed into place.
// (Changing the umask instead would be process-wide and race with other goroutines creating
// files and directories.) The temporary name adds 13 bytes to the path, which must stay within
// the kernel's limit for socket paths (108 bytes on Linux).
func listenUnix0600(path string) (_ net.Listener, err error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	// Close must not unlink the temporary name (gone) nor anything else: Server.Close removes path.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	defer func() {
		if err != nil {
			_ = ln.Close()
		}
	}()
	if err := os.Chmod(tmp, 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, errors.Join(err, os.Remove(tmp))
	}
	return ln, nil
}
