package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fixture writes a small "binary" (executable script), a data file and a
// file with an explicit mode, with host modes and mtimes that must not leak
// into the image.
func fixture(t *testing.T) (dir string, args []string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return p
	}
	bin := write("hook", "#!/bin/sh\necho hook\n", 0o700)
	data := write("data.txt", "some data\n", 0o600)
	conf := write("conf", "hosts: files dns\n", 0o600)
	return dir, []string{
		"--name", "dnsguard/webhook:0.1.0",
		"--file", bin + ":/webhook",
		"--file", data + ":/usr/share/dnsguard/data.txt",
		"--file", conf + ":/etc/nsswitch.conf:0644",
		"--entrypoint", "/webhook", "--arg", "--v=1",
		"--cmd", "serve",
		"--user", "65532:65532",
		"--port", "8443/tcp", "--port", "53/udp",
		"--env", "GODEBUG=x=1",
		"--label", "org.opencontainers.image.version=0.1.0",
		"--label", "org.opencontainers.image.source=https://github.com/dnsguard/dnsguard",
		"--platform", "linux/amd64",
	}
}

func build(t *testing.T, out string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(append(args, "--out", out), &stdout, &stderr); err != nil {
		t.Fatalf("imagebuild %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// tarEntry is what the test checks about one layer entry.
type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Uname    string
	Gname    string
	ModTime  int64
	Content  string
}

func layerEntries(t *testing.T, l v1.Layer) []tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []tarEntry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime.Unix(), string(b)})
	}
	return out
}

// TestBuildReadBack builds an image and reads it back with
// go-containerregistry's docker-archive reader (what docker load and crane
// push see): config, platform, the layer's exact file list, modes, owners
// and mtimes.
func TestBuildReadBack(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	_, args := fixture(t)
	out := filepath.Join(t.TempDir(), "webhook.tar")
	build(t, out, args...)

	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := v1.Config{
		Entrypoint:   []string{"/webhook", "--v=1"},
		Cmd:          []string{"serve"},
		User:         "65532:65532",
		ExposedPorts: map[string]struct{}{"8443/tcp": {}, "53/udp": {}},
		Env:          []string{defaultPath, "GODEBUG=x=1"},
		Labels: map[string]string{
			"org.opencontainers.image.version": "0.1.0",
			"org.opencontainers.image.source":  "https://github.com/dnsguard/dnsguard",
		},
	}
	if !reflect.DeepEqual(cf.Config, wantCfg) {
		t.Errorf("config:\n got %+v\nwant %+v", cf.Config, wantCfg)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if got := cf.Created.Unix(); got != 1700000000 {
		t.Errorf("created %d, want SOURCE_DATE_EPOCH 1700000000", got)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	const e = 1700000000
	want := []tarEntry{
		{"etc/", tar.TypeDir, 0o755, 0, 0, "", "", e, ""},
		{"etc/nsswitch.conf", tar.TypeReg, 0o644, 0, 0, "", "", e, "hosts: files dns\n"},
		{"usr/", tar.TypeDir, 0o755, 0, 0, "", "", e, ""},
		{"usr/share/", tar.TypeDir, 0o755, 0, 0, "", "", e, ""},
		{"usr/share/dnsguard/", tar.TypeDir, 0o755, 0, 0, "", "", e, ""},
		{"usr/share/dnsguard/data.txt", tar.TypeReg, 0o444, 0, 0, "", "", e, "some data\n"},
		{"webhook", tar.TypeReg, 0o555, 0, 0, "", "", e, "#!/bin/sh\necho hook\n"},
	}
	if got := layerEntries(t, layers[0]); !reflect.DeepEqual(got, want) {
		t.Errorf("layer entries:\n got %+v\nwant %+v", got, want)
	}
}

// TestReproducible builds the same inputs twice, with the sources' mtimes
// and the output paths changed in between: the digests and the tarballs'
// bytes must be identical.
func TestReproducible(t *testing.T) {
	dir, args := fixture(t)
	tmp := t.TempDir()
	out1, out2 := filepath.Join(tmp, "a.tar"), filepath.Join(tmp, "b.tar")
	build(t, out1, args...)
	later := time.Now().Add(time.Hour)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if err := os.Chtimes(filepath.Join(dir, e.Name()), later, later); err != nil {
			t.Fatal(err)
		}
	}
	build(t, out2, args...)
	b1, _ := os.ReadFile(out1)
	b2, _ := os.ReadFile(out2)
	if len(b1) == 0 || !bytes.Equal(b1, b2) {
		t.Errorf("tarballs differ (%d and %d bytes)", len(b1), len(b2))
	}
	d1, d2 := digestOf(t, out1), digestOf(t, out2)
	if d1 != d2 {
		t.Errorf("digests differ: %s vs %s", d1, d2)
	}
	// The test would pass vacuously if the build ignored its inputs.
	t.Setenv("SOURCE_DATE_EPOCH", "1")
	out3 := filepath.Join(tmp, "c.tar")
	build(t, out3, args...)
	if d3 := digestOf(t, out3); d3 == d1 {
		t.Errorf("a different SOURCE_DATE_EPOCH gave the same digest %s", d3)
	}
}

func digestOf(t *testing.T, path string) v1.Hash {
	t.Helper()
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestOCILayout reads the same tarball as an OCI image layout (what
// containerd's importer uses when oci-layout is present): one manifest,
// named by the annotations ctr reads, the same image as manifest.json's.
func TestOCILayout(t *testing.T) {
	_, args := fixture(t)
	out := filepath.Join(t.TempDir(), "webhook.tar")
	stdout := build(t, out, args...)
	dir := t.TempDir()
	if b, err := exec.Command("tar", "-C", dir, "-xf", out).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	wantAnn := map[string]string{
		"io.containerd.image.name":          "docker.io/dnsguard/webhook:0.1.0",
		"org.opencontainers.image.ref.name": "0.1.0",
	}
	if !reflect.DeepEqual(desc.Annotations, wantAnn) {
		t.Errorf("annotations %v, want %v", desc.Annotations, wantAnn)
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != "amd64" {
		t.Errorf("platform %+v, want linux/amd64", desc.Platform)
	}
	// The tool prints the manifest digest the layout holds.
	if !strings.Contains(stdout, desc.Digest.String()) {
		t.Errorf("index digest %s is not the one imagebuild printed: %s", desc.Digest, stdout)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("media types: manifest %s, config %s, layers %+v", m.MediaType, m.Config.MediaType, m.Layers)
	}
	// manifest.json readers (docker load, crane push) synthesize a Docker
	// schema 2 manifest, so its digest differs; the image ID (config
	// digest) and the layer are the same blobs.
	dockerView, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := img.ConfigName()
	id2, _ := dockerView.ConfigName()
	if id1 != id2 || !strings.Contains(stdout, "id "+id1.String()) {
		t.Errorf("image IDs: layout %s, manifest.json %s, printed %s", id1, id2, stdout)
	}
	dl, _ := dockerView.Layers()
	d1, _ := dl[0].Digest()
	if d1 != m.Layers[0].Digest {
		t.Errorf("layer digests: layout %s, manifest.json %s", m.Layers[0].Digest, d1)
	}
	// Reading every layer verifies the blobs against their digests.
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v", len(layers), err)
	}
	if got := len(layerEntries(t, layers[0])); got != 7 {
		t.Errorf("layer has %d entries, want 7", got)
	}
	var mf []dockerManifestEntry
	raw, err := exec.Command("tar", "-xOf", out, "manifest.json").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &mf); err != nil {
		t.Fatal(err)
	}
	if len(mf) != 1 || !reflect.DeepEqual(mf[0].RepoTags, []string{"dnsguard/webhook:0.1.0"}) {
		t.Errorf("manifest.json %+v, want one entry tagged dnsguard/webhook:0.1.0", mf)
	}
}

// TestFormatDocker: the manifest.json-only format holds the same image.
func TestFormatDocker(t *testing.T) {
	_, args := fixture(t)
	tmp := t.TempDir()
	oci, dock := filepath.Join(tmp, "oci.tar"), filepath.Join(tmp, "docker.tar")
	build(t, oci, args...)
	build(t, dock, append(args, "--format", "docker")...)
	if a, b := digestOf(t, oci), digestOf(t, dock); a != b {
		t.Errorf("formats hold different images: %s vs %s", a, b)
	}
	list, err := exec.Command("tar", "-tf", dock).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(list), "index.json") || !strings.Contains(string(list), "manifest.json") {
		t.Errorf("docker format entries:\n%s", list)
	}
}

// TestPush pushes the tarball's image to a registry (go-containerregistry's
// registry, the one `go run .../cmd/registry` serves) on loopback and pulls
// it back by tag: same digest, same config.
func TestPush(t *testing.T) {
	_, args := fixture(t)
	out := filepath.Join(t.TempDir(), "webhook.tar")
	build(t, out, args...)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.NewTag(host+"/dnsguard/webhook:0.1.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push: %v", err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	want, _ := img.Digest()
	got, err := pulled.Digest()
	if err != nil || got != want {
		t.Errorf("pulled digest %s (%v), pushed %s", got, err, want)
	}
	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/webhook", "--v=1"}) {
		t.Errorf("pulled config %+v", cf.Config)
	}
}

// fakeELF writes a minimal 64-bit little-endian ELF header for machine m.
func fakeELF(t *testing.T, dir string, m elf.Machine) string {
	t.Helper()
	var h elf.Header64
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	h.Type = uint16(elf.ET_EXEC)
	h.Machine = uint16(m)
	h.Version = uint32(elf.EV_CURRENT)
	h.Ehsize = 64
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &h); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "elf-"+m.String())
	if err := os.WriteFile(p, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadInput: every mistake is refused with an error naming it, and no
// output file appears.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	arm := fakeELF(t, dir, elf.EM_AARCH64)
	amd := fakeELF(t, dir, elf.EM_X86_64)
	base := []string{"--name", "x/y:1"}
	cases := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no name", []string{"--file", f + ":/f"}, "", "--name is required"},
		{"no tag", []string{"--name", "x/y", "--file", f + ":/f"}, "", "explicit tag"},
		{"bad name", []string{"--name", "X Y:1", "--file", f + ":/f"}, "", `--name "X Y:1"`},
		{"no file", base, "", "at least one --file"},
		{"file without dst", append(base, "--file", f), "", "want SRC:DST"},
		{"relative dst", append(base, "--file", f+":f"), "", "must be absolute"},
		{"unclean dst", append(base, "--file", f+":/a/../f"), "", "clean path"},
		{"root dst", append(base, "--file", f+":/"), "", "clean path"},
		{"bad mode", append(base, "--file", f+":/f:rwx"), "", "octal"},
		{"missing src", append(base, "--file", dir+"/nope:/f"), "", "no such file"},
		{"dir src", append(base, "--file", dir+":/f"), "", "not a regular file"},
		{"dup dst", append(base, "--file", f+":/f", "--file", amd+":/f"), "", "destination given twice"},
		{"file over dir", append(base, "--file", f+":/a", "--file", f+":/a/b"), "", "both a file and the parent"},
		{"user name", append(base, "--file", f+":/f", "--user", "nobody"), "", "numeric"},
		{"user empty gid", append(base, "--file", f+":/f", "--user", "1:"), "", "numeric"},
		{"port range", append(base, "--file", f+":/f", "--port", "70000"), "", "1-65535"},
		{"port proto", append(base, "--file", f+":/f", "--port", "53/icmp"), "", "tcp, udp or sctp"},
		{"label", append(base, "--file", f+":/f", "--label", "novalue"), "", "KEY=VALUE"},
		{"env", append(base, "--file", f+":/f", "--env", "=x"), "", "KEY=VALUE"},
		{"arg without entrypoint", append(base, "--file", f+":/f", "--arg", "x"), "", "--arg needs --entrypoint"},
		{"relative entrypoint", append(base, "--file", f+":/f", "--entrypoint", "f"), "", "--entrypoint"},
		{"platform os", append(base, "--file", f+":/f", "--platform", "windows/amd64"), "", "only linux"},
		{"platform arch", append(base, "--file", f+":/f", "--platform", "linux/z80"), "", "unknown architecture"},
		{"format", append(base, "--file", f+":/f", "--format", "zip"), "", "want oci or docker"},
		{"epoch", append(base, "--file", f+":/f"), "yesterday", "SOURCE_DATE_EPOCH"},
		{"stray arg", append(base, "--file", f+":/f", "extra"), "", "unexpected argument"},
		{"wrong arch", append(base, "--file", arm+":/bin", "--platform", "linux/amd64"), "", "does not match the image architecture amd64"},
		{"right arch elsewhere", append(base, "--file", amd+":/bin", "--platform", "linux/arm64"), "", "does not match the image architecture arm64"},
		{"dynamic without loader", append(base, "--file", "/bin/true:/true"), "", "is dynamically linked and needs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tc.env)
			out := filepath.Join(t.TempDir(), "out.tar")
			var stderr bytes.Buffer
			err := run(append(tc.args, "--out", out), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, serr := os.Stat(out); !os.IsNotExist(serr) {
				t.Errorf("output exists after a failed build: %v", serr)
			}
			left, _ := os.ReadDir(filepath.Dir(out))
			if len(left) != 0 {
				t.Errorf("files left behind: %v", left)
			}
		})
	}
	// The matching architecture is accepted (the checks above are not
	// refusing every ELF file).
	build(t, filepath.Join(t.TempDir(), "ok.tar"), append(base, "--file", arm+":/bin", "--platform", "linux/arm64")...)
}

func TestParseLdd(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
		err      string
	}{
		{"glibc", "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f53)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f53)\n",
			[]string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}, ""},
		{"old vdso form", "\tlinux-vdso.so.1 =>  (0x00007ffd)\n\tlibm.so.6 => /lib/libm.so.6 (0x1)\n", []string{"/lib/libm.so.6"}, ""},
		{"static", "\tstatically linked\n", nil, ""},
		{"not dynamic", "\tnot a dynamic executable\n", nil, ""},
		{"missing", "\tlibfoo.so.1 => not found\n", nil, "libfoo.so.1 not found"},
		{"unclean", "\tlibc.so.6 => /lib/../etc/x (0x1)\n", nil, "unexpected path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLdd(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestWithLibsRuns builds an image of the host's dynamic getent with
// --with-libs and runs it, chrooted into the unpacked layer: it must
// resolve a name from the image's /etc/hosts through nsswitch.conf, which
// needs the loader, libc and its NSS at the paths ldd printed.
func TestWithLibsRuns(t *testing.T) {
	getent, err := exec.LookPath("getent")
	if err != nil {
		t.Skip("no getent on this machine")
	}
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	nss := filepath.Join(dir, "nsswitch.conf")
	if err := os.WriteFile(hosts, []byte("192.0.2.7 imagebuild-test.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nss, []byte("hosts: files dns\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "client.tar")
	build(t, out, "--name", "dnsguard/test-glibc:1", "--with-libs",
		"--file", getent+":/getent", "--file", hosts+":/etc/hosts", "--file", nss+":/etc/nsswitch.conf",
		"--entrypoint", "/getent")
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	var names []string
	for _, e := range layerEntries(t, layers[0]) {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	joined := strings.Join(names, " ")
	for _, want := range []string{"getent", "lib64/ld-linux-x86-64.so.2", "libc.so.6"} {
		if !strings.Contains(joined, want) {
			t.Errorf("layer lacks %s: %v", want, names)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("running the image needs root (chroot)")
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	rc, _ := layers[0].Uncompressed()
	defer rc.Close()
	cmd := exec.Command("tar", "-C", root, "-x")
	cmd.Stdin = rc
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack: %v: %s", err, b)
	}
	got, err := exec.Command("chroot", root, "/getent", "hosts", "imagebuild-test.example").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(got), "192.0.2.7") {
		t.Errorf("chroot getent: %v: %q", err, got)
	}
}

// FuzzParseLdd: whatever ldd prints, parseLdd never panics and returns
// only absolute, clean paths (they become paths inside the image).
func FuzzParseLdd(f *testing.F) {
	f.Add("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f53)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f53)\n")
	f.Add("\tlibfoo.so.1 => not found\n")
	f.Add("\tstatically linked\n")
	f.Add("x => /a/../b (0x1)\n/ (0x2)\n")
	f.Fuzz(func(t *testing.T, in string) {
		libs, err := parseLdd(in)
		if err != nil {
			return
		}
		for _, l := range libs {
			if checkDst(l) != nil {
				t.Errorf("parseLdd(%q) returned %q, not a clean absolute file path", in, l)
			}
		}
	})
}
