package lab

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Mode is one configuration of a backend, in table order.
type Mode struct {
	// Name is the key rows and expectations use: off, dnsconfig, sidecar,
	// sidecar-nofallback, nodelocal.
	Name string
	// Label is the table's name for it.
	Label string
	// Clients it runs, catalogue names.
	Clients []string
	// How says, on the page, how the configuration came about.
	How string
	// Group: modes with the same non-empty Group run side by side, where
	// the first of them is in the table, under one emulation table (each client keeps its own rule and
	// counters). A mode whose checks read a node-wide counter (the node
	// cache's) must have none.
	Group string
}

// Options are the lab's knobs, read from the environment by FromEnv.
type Options struct {
	// N lookups per row (RACE_N, 100).
	N int
	// Every: drop every Every-th colliding packet (RACE_EVERY, 10).
	Every int
	// ProbeN lookups per libc of the real-race probe, 0 skips it
	// (RACE_PROBE_N; the backend's default).
	ProbeN int
	// Modes and Clients: a subset of the backend's (RACE_MODES,
	// RACE_CLIENTS; comma or space separated). Subset is true when either
	// was narrowed: assertions comparing rows then skip, saying so, when the
	// subset lacks a row they need.
	Modes   []string
	Clients []string
	Subset  bool
	// Out is the run directory the report, rows and logs go to (RACE_OUT).
	Out string
	// Docs: also write the page under docs/ (RACE_DOCS=1; make
	// race-lab-docs). Needs every row.
	Docs bool
	// Command is what reproduces the run, named on the page.
	Command string
}

// FromEnv reads the options; modes is the backend's catalogue, probeN and
// out its defaults.
func FromEnv(modes []Mode, probeN int, out, command string) (Options, error) {
	o := Options{Out: out, Command: command}
	var err error
	if o.N, err = envInt("RACE_N", 100, 1, 1000); err != nil {
		return o, err
	}
	if o.Every, err = envInt("RACE_EVERY", 10, 1, 1000); err != nil {
		return o, err
	}
	if o.ProbeN, err = envInt("RACE_PROBE_N", probeN, 0, 2000); err != nil {
		return o, err
	}
	var allModes, allClients []string
	for _, m := range modes {
		allModes = append(allModes, m.Name)
		for _, c := range m.Clients {
			if !slices.Contains(allClients, c) {
				allClients = append(allClients, c)
			}
		}
	}
	// "default" is the Kubernetes default, the mode the webhook calls off.
	if o.Modes, err = envList("RACE_MODES", allModes, map[string]string{"default": "off"}); err != nil {
		return o, err
	}
	if o.Clients, err = envList("RACE_CLIENTS", allClients, nil); err != nil {
		return o, err
	}
	o.Subset = len(o.Modes) < len(allModes) || len(o.Clients) < len(allClients)
	if v := os.Getenv("RACE_OUT"); v != "" {
		o.Out = v
	}
	switch v := os.Getenv("RACE_DOCS"); v {
	case "", "0":
	case "1":
		o.Docs = true
	default:
		return o, fmt.Errorf("RACE_DOCS=%q: want 1 (write the docs page) or unset", v)
	}
	if o.Docs && o.Subset {
		// A page is read as the whole lab; a subset would silently lack rows.
		return o, fmt.Errorf("RACE_DOCS=1 needs every row: unset RACE_MODES and RACE_CLIENTS")
	}
	return o, nil
}

func envInt(name string, def, lo, hi int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: want an integer in [%d, %d]", name, v, lo, hi)
	}
	return n, nil
}

// envList is the subset of all named in the environment, in all's order.
func envList(name string, all []string, alias map[string]string) ([]string, error) {
	v := strings.Fields(strings.ReplaceAll(os.Getenv(name), ",", " "))
	if len(v) == 0 {
		return all, nil
	}
	for i, x := range v {
		if a, ok := alias[x]; ok {
			v[i] = a
		} else if !slices.Contains(all, x) {
			return nil, fmt.Errorf("%s: unknown %q, want a subset of %q", name, x, strings.Join(all, " "))
		}
	}
	var out []string
	for _, x := range all {
		if slices.Contains(v, x) {
			out = append(out, x)
		}
	}
	return out, nil
}
