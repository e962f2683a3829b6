package auth

import (
	"net"
	"syscall"
)

// peerUID reads the uid of the process on the other end of a unix socket.
func peerUID(uc *net.UnixConn) (uint32, bool) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return cred.Uid, true
}
