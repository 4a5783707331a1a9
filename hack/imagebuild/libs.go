package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
)

// lddLibs returns the absolute paths ldd lists for a dynamic executable: its
// shared libraries and its loader. The kernel's vDSO has no file and is
// skipped; a library ldd cannot find is an error (the image would not run).
//
// ldd output, one object a line:
//
//	linux-vdso.so.1 (0x00007ffd...)
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f...)
//	libfoo.so.1 => not found
//	/lib64/ld-linux-x86-64.so.2 (0x00007f...)
func parseLdd(out string) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.Contains(line, "statically linked") || strings.Contains(line, "not a dynamic executable") {
			return nil, nil
		}
		var p string
		if name, target, ok := strings.Cut(line, "=>"); ok {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("ldd: %s not found", strings.TrimSpace(name))
			}
			p, _, _ = strings.Cut(target, " (")
			if p == "" { // "linux-vdso.so.1 =>  (0x...)" in older glibc
				continue
			}
		} else {
			p, _, _ = strings.Cut(line, " (")
		}
		p = strings.TrimSpace(p)
		if !strings.HasPrefix(p, "/") {
			continue // vDSO: provided by the kernel
		}
		if err := checkDst(p); err != nil {
			return nil, fmt.Errorf("ldd: unexpected path %q: %w", p, err)
		}
		libs = append(libs, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading ldd output: %w", err)
	}
	return libs, nil
}

// withLibs returns files plus, for every dynamic ELF among them, the
// libraries and loader ldd lists on this machine, each at the path ldd
// printed (symlinks resolved to their content), so the loader's default
// search path finds them. Libraries loaded with dlopen (glibc's NSS modules
// other than files and dns, which live in libc.so.6 since glibc 2.34) are
// not listed by ldd: add them with --file.
func withLibs(files []layerFile) ([]layerFile, error) {
	have := map[string]bool{}
	for _, f := range files {
		have[f.dst] = true
	}
	var extra []File
	for _, f := range files {
		info, err := inspectELF(f.data)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", f.dst, f.src, err)
		}
		if info == nil || info.interp == "" {
			continue
		}
		out, err := exec.Command("ldd", f.src).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w: %s", f.src, err, strings.TrimSpace(string(out)))
		}
		libs, err := parseLdd(string(out))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.src, err)
		}
		for _, l := range libs {
			if have[l] {
				continue
			}
			have[l] = true
			// Libraries keep the host's 0755/0644 distinction as 0555/0444.
			extra = append(extra, File{Src: l, Dst: l, Mode: -1})
		}
	}
	libFiles, err := readFiles(extra)
	if err != nil {
		return nil, err
	}
	return append(files, libFiles...), nil
}
