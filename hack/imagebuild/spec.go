package main

import (
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// Spec is everything one image is built from. Every field comes from a flag;
// see usage in main.go.
type Spec struct {
	Name       string   // image reference with an explicit tag
	Out        string   // output tarball
	Files      []File   // what goes into the single layer
	Entrypoint []string // exec form; empty means none
	Cmd        []string
	User       string // numeric uid[:gid]: scratch images have no /etc/passwd
	Ports      []string
	Env        []string
	WorkingDir string
	Labels     map[string]string
	OS, Arch   string
	Variant    string
	Epoch      int64 // mtime of every file and the image's creation time
	WithLibs   bool  // add the shared libraries and loader of dynamic ELF files (ldd)
	Format     string
}

// File is one regular file of the image: Src on this machine, Dst in the image.
type File struct {
	Src  string
	Dst  string
	Mode int64 // -1: 0555 when Src is executable, else 0444
}

// parseFile reads SRC:DST[:MODE] (MODE octal, e.g. 0644).
func parseFile(s string) (File, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return File{}, fmt.Errorf("--file %q: want SRC:DST or SRC:DST:MODE", s)
	}
	f := File{Src: parts[0], Dst: parts[1], Mode: -1}
	if err := checkDst(f.Dst); err != nil {
		return File{}, fmt.Errorf("--file %q: %w", s, err)
	}
	if len(parts) == 3 {
		m, err := strconv.ParseInt(parts[2], 8, 32)
		if err != nil || m < 0 || m > 0o7777 {
			return File{}, fmt.Errorf("--file %q: mode %q is not an octal file mode like 0555", s, parts[2])
		}
		f.Mode = m
	}
	return f, nil
}

// checkDst accepts only absolute, clean paths below /: a ".." or "//" in an
// image path is a typo at best and a path escape at worst.
func checkDst(dst string) error {
	if !strings.HasPrefix(dst, "/") {
		return fmt.Errorf("destination %q must be absolute", dst)
	}
	if path.Clean(dst) != dst || dst == "/" || strings.Contains(dst, "/../") {
		return fmt.Errorf("destination %q must be a clean path of a file below /", dst)
	}
	return nil
}

// parsePort reads PORT[/PROTO] into the config's "8443/tcp" form.
func parsePort(s string) (string, error) {
	num, proto, found := strings.Cut(s, "/")
	if !found {
		proto = "tcp"
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("--port %q: port must be 1-65535", s)
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return "", fmt.Errorf("--port %q: protocol must be tcp, udp or sctp", s)
	}
	return fmt.Sprintf("%d/%s", n, proto), nil
}

// checkUser accepts numeric uid or uid:gid only: a name would need an
// /etc/passwd in the image, and Kubernetes' runAsNonRoot can only verify a
// numeric user.
func checkUser(s string) error {
	if s == "" {
		return nil
	}
	uid, gid, hasGID := strings.Cut(s, ":")
	for _, v := range []string{uid, gid} {
		if v == "" && !hasGID {
			continue
		}
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return fmt.Errorf("--user %q: want numeric UID or UID:GID", s)
		}
	}
	return nil
}

// parsePlatform reads OS/ARCH[/VARIANT].
func parsePlatform(s string) (osName, arch, variant string, err error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", fmt.Errorf("--platform %q: want OS/ARCH[/VARIANT], e.g. linux/amd64", s)
	}
	if parts[0] != "linux" {
		return "", "", "", fmt.Errorf("--platform %q: only linux images are built", s)
	}
	if _, ok := elfMachines[parts[1]]; !ok {
		return "", "", "", fmt.Errorf("--platform %q: unknown architecture %q", s, parts[1])
	}
	if len(parts) == 3 {
		variant = parts[2]
	}
	return parts[0], parts[1], variant, nil
}

// epochFromEnv is SOURCE_DATE_EPOCH (reproducible-builds.org) or 0.
func epochFromEnv() (int64, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a non-negative number of seconds", v)
	}
	return n, nil
}
