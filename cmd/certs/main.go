// Command certs makes dnsguard's TLS material.
//
//	certs dev --out-dir=DIR [--hosts=127.0.0.1,localhost] [--validity=8760h]
//
// writes a fresh CA and a serving certificate for local development.
// Further subcommands (the in-cluster bootstrap) are registered in their own
// files through the subcommands map.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/dnsguard/dnsguard/certs"
)

// subcommand runs one verb with its own flag set; it returns an error for
// main to print.
type subcommand struct {
	summary string
	run     func(args []string) error
}

var subcommands = map[string]subcommand{
	"dev": {"write a development CA and serving certificate into a directory", runDev},
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	sc, ok := subcommands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "certs: unknown subcommand %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := sc.run(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // the flag package already printed the usage
		}
		fmt.Fprintf(os.Stderr, "certs %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: certs <subcommand> [flags]\n\nsubcommands:")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, subcommands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'certs <subcommand> --help' for its flags.")
}

func runDev(args []string) error {
	fs := flag.NewFlagSet("certs dev", flag.ContinueOnError)
	out := fs.String("out-dir", "", "directory to write ca.crt, ca.key, tls.crt and tls.key into (required)")
	hosts := fs.String("hosts", "127.0.0.1,localhost,::1", "comma-separated IP addresses and DNS names for the serving certificate")
	validity := fs.Duration("validity", certs.DefaultServingValidity, "lifetime of the serving certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out-dir is required")
	}
	var hs []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		return fmt.Errorf("--hosts=%q names no host", *hosts)
	}
	if err := certs.WriteDev(*out, hs, *validity); err != nil {
		return err
	}
	fmt.Printf("wrote development CA and serving certificate for %s into %s (valid %s)\n", strings.Join(hs, ","), *out, time.Duration(*validity))
	return nil
}
