// Command pause is the process a pod sandbox keeps running: it sleeps until
// SIGINT or SIGTERM (then exits 0) and, as PID 1 of the pod's PID namespace,
// reaps every orphan reparented to it, like Kubernetes' pause.c. It is built
// static and imported as containerd's default sandbox image
// (registry.k8s.io/pause:3.10.1) where no registry is reachable, and serves
// as the idle entrypoint of the e2e client images.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const version = "dnsguard-pause-1"

func main() {
	showVersion := flag.Bool("v", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1, orphans are not reparented to this process")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// A child that exited before the handler was installed sent its SIGCHLD
	// into the void; collect it now or it stays a zombie.
	reap()
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
			os.Exit(0)
		}
	}
}

// reap collects every exited child. Signals coalesce, so one SIGCHLD may
// stand for many exits: loop until none is left.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
