package harness

import (
	"errors"
	"fmt"
	"net"
)

// FreePort returns a port that is free on 127.0.0.1 for both UDP and TCP at
// the moment of the call (a DNS server listens on both). Another process
// may take it before the caller binds it; the tests that use it start one
// server per port at a time, so that race is rare and fails loudly.
func FreePort() (int, error) {
	var last error
	for range 50 {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, fmt.Errorf("free port: %w", err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		u.Close()
		if err != nil {
			last = err // TCP side taken: try another
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.Join(errors.New("free port: none free for both UDP and TCP in 50 tries"), last)
}
