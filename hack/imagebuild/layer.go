package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// elfMachines maps GOARCH names to the ELF machine a binary for them has.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"386":     elf.EM_386,
	"arm":     elf.EM_ARM,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

// maxFileSize bounds what one file may add to the in-memory layer: the
// biggest binary here (CoreDNS) is under 100 MiB.
const maxFileSize = 512 << 20

// layerFile is a file as it will appear in the layer.
type layerFile struct {
	dst  string // absolute path in the image
	mode int64
	data []byte
	src  string // for error messages
}

// readFiles reads every source (following symlinks: the image gets the
// content, never a link pointing into the build machine) and settles modes.
func readFiles(files []File) ([]layerFile, error) {
	seen := map[string]string{}
	out := make([]layerFile, 0, len(files))
	for _, f := range files {
		if prev, ok := seen[f.Dst]; ok {
			return nil, fmt.Errorf("%s: destination given twice (from %s and %s)", f.Dst, prev, f.Src)
		}
		seen[f.Dst] = f.Src
		st, err := os.Stat(f.Src)
		if err != nil {
			return nil, fmt.Errorf("--file %s:%s: %w", f.Src, f.Dst, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("--file %s:%s: source is not a regular file (directories are not copied; list their files)", f.Src, f.Dst)
		}
		if st.Size() > maxFileSize {
			return nil, fmt.Errorf("--file %s:%s: %d bytes is over the %d-byte limit", f.Src, f.Dst, st.Size(), maxFileSize)
		}
		data, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, fmt.Errorf("--file %s:%s: %w", f.Src, f.Dst, err)
		}
		mode := f.Mode
		if mode < 0 {
			// Read-only for everyone: the image's user never owns its files.
			mode = 0o444
			if st.Mode().Perm()&0o111 != 0 {
				mode = 0o555
			}
		}
		out = append(out, layerFile{dst: f.Dst, mode: mode, data: data, src: f.Src})
	}
	return out, nil
}

// elfInfo is what the build checks about an ELF file.
type elfInfo struct {
	machine elf.Machine
	interp  string // PT_INTERP, empty for static binaries
}

// inspectELF returns nil (and no error) for files that are not ELF.
func inspectELF(data []byte) (*elfInfo, error) {
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return nil, nil
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("unreadable ELF file: %w", err)
	}
	defer ef.Close()
	info := &elfInfo{machine: ef.Machine}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return nil, fmt.Errorf("reading PT_INTERP: %w", err)
		}
		info.interp = strings.TrimRight(string(b), "\x00")
	}
	return info, nil
}

// checkELF refuses images that could only fail at run time: an executable
// for another architecture, or a dynamic one whose loader is not in the
// image (the kernel then reports "no such file or directory" for a file
// that plainly exists, the most confusing error a container can give).
func checkELF(files []layerFile, arch string) error {
	in := map[string]bool{}
	for _, f := range files {
		in[f.dst] = true
	}
	want := elfMachines[arch]
	for _, f := range files {
		info, err := inspectELF(f.data)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", f.dst, f.src, err)
		}
		if info == nil {
			continue
		}
		// Shared libraries count too: a wrong-arch libc fails the same way.
		if info.machine != want {
			return fmt.Errorf("%s (%s): ELF machine %s does not match the image architecture %s (%s)", f.dst, f.src, info.machine, arch, want)
		}
		if info.interp != "" && !in[info.interp] {
			return fmt.Errorf("%s (%s) is dynamically linked and needs %s, which is not in the image: build it static (CGO_ENABLED=0, -static) or add --with-libs", f.dst, f.src, info.interp)
		}
	}
	return nil
}

// layerTar writes the files, and every parent directory, as a tar stream
// that depends only on the inputs: sorted paths, one mtime, owner 0:0 with
// no user or group names, directories 0755.
func layerTar(files []layerFile, epoch int64) ([]byte, error) {
	mtime := time.Unix(epoch, 0).UTC()
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.dst); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		name string
		dir  bool
		f    *layerFile
	}
	var entries []entry
	for d := range dirs {
		entries = append(entries, entry{name: strings.TrimPrefix(d, "/") + "/", dir: true})
	}
	for i := range files {
		if dirs[files[i].dst] {
			return nil, fmt.Errorf("%s is both a file and the parent directory of another file", files[i].dst)
		}
		entries = append(entries, entry{name: strings.TrimPrefix(files[i].dst, "/"), f: &files[i]})
	}
	// Sorting by name puts every directory before what it contains.
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			ModTime: mtime,
			Uid:     0,
			Gid:     0,
		}
		if e.dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Mode = 0o755
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Mode = e.f.mode
			hdr.Size = int64(len(e.f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", e.name, err)
		}
		if e.f != nil {
			if _, err := tw.Write(e.f.data); err != nil {
				return nil, fmt.Errorf("tar data %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, errors.Join(errors.New("closing layer tar"), err)
	}
	return buf.Bytes(), nil
}
