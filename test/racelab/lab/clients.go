package lab

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Client is one way of looking a name up. All but glibc-getent run
// test/racelab/gailoop.c, built twice from that one file: gcc against glibc
// and musl-gcc -static (BuildClients here; hack/images.sh puts the same two
// builds into the cluster's client images).
type Client struct {
	Name string
	// Libc is glibc or musl.
	Libc string
	// Fork: every lookup in a fresh child process (gailoop -f), as
	// short-lived processes and every process's first lookup see it;
	// otherwise all lookups in one process (glibc keeps its sticky
	// single-request fallback; musl keeps no resolver state).
	Fork bool
	// Getent: glibc's own `getent ahosts`, one process per lookup
	// (getent-loop.sh), latency including process start-up.
	Getent bool
	// Doc is the line the report gives the client.
	Doc string
}

// Clients is the catalogue in table order; each backend's modes name the
// ones they run.
var Clients = []Client{
	{Name: "glibc-gai", Libc: "glibc", Fork: true, Doc: "`test/racelab/gailoop.c` built with gcc against glibc; every lookup in a fresh child process (`gailoop -f`), as short-lived processes and every process's first lookup see it"},
	{Name: "glibc-gai-loop", Libc: "glibc", Doc: "the same binary, all lookups in one process — shows glibc's sticky fallback to single-request mode"},
	{Name: "glibc-getent", Libc: "glibc", Getent: true, Doc: "`getent ahosts`, one process per lookup (latency includes process start-up)"},
	{Name: "musl-gai", Libc: "musl", Doc: "the same C file built with `musl-gcc -static`; all lookups in one process (musl keeps no resolver state between calls)"},
	{Name: "musl-gai-fork", Libc: "musl", Fork: true, Doc: "the musl build, every lookup in a fresh child process (`gailoop -f`)"},
}

// ClientNamed looks a client up in the catalogue.
func ClientNamed(name string) (Client, bool) {
	for _, c := range Clients {
		if c.Name == name {
			return c, true
		}
	}
	return Client{}, false
}

// RowLimit bounds a row of n lookups: gailoop stops itself after this many
// seconds (above n stalls of 5 s and change), so a broken network can never
// make the lab run unbounded.
func RowLimit(n int) int { return n*7 + 30 }

// GailoopArgs are gailoop's arguments for n lookups of name, with extra
// flags (e.g. "-u", prefix: a name of its own per lookup under name).
func (c Client) GailoopArgs(n int, name string, extra ...string) []string {
	args := []string{"-n", strconv.Itoa(n), "-t", strconv.Itoa(RowLimit(n))}
	if c.Fork {
		args = append(args, "-f")
	}
	return append(append(args, extra...), name)
}

//go:embed getent-loop.sh
var getentLoop []byte

// Binaries are the clients built for this machine.
type Binaries struct {
	Glibc, Musl, GetentLoop string
}

// Argv is the command line of client c doing n lookups of name.
func (b Binaries) Argv(c Client, n int, name string) []string {
	switch {
	case c.Getent:
		return []string{b.GetentLoop, strconv.Itoa(n), strconv.Itoa(RowLimit(n)), name}
	case c.Libc == "musl":
		return append([]string{b.Musl}, c.GailoopArgs(n, name)...)
	default:
		return append([]string{b.Glibc}, c.GailoopArgs(n, name)...)
	}
}

// BuildClients compiles gailoop.c with gcc and musl-gcc -static into dir
// and writes the getent loop next to them.
func BuildClients(ctx context.Context, src, dir string) (Binaries, error) {
	b := Binaries{Glibc: filepath.Join(dir, "gai-glibc"), Musl: filepath.Join(dir, "gai-musl"), GetentLoop: filepath.Join(dir, "getent-loop")}
	for _, argv := range [][]string{
		{"gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", b.Glibc, src},
		{"musl-gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static", "-o", b.Musl, src},
	} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return b, fmt.Errorf("%s: %w: %s", argv[0], err, out)
		}
	}
	if err := os.WriteFile(b.GetentLoop, getentLoop, 0o755); err != nil {
		return b, fmt.Errorf("write getent loop: %w", err)
	}
	return b, nil
}
