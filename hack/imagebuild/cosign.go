package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Cosign runs bin/cosign against a plain-HTTP loopback registry, offline:
// no transparency log upload, no certificate authority, a key.
type Cosign struct {
	Bin string
	Key string   // private key file (sign, attest)
	Env []string // COSIGN_PASSWORD and a TUF cache of its own
}

// registryFlags let cosign talk to the loopback registry over HTTP.
var registryFlags = []string{"--allow-http-registry", "--allow-insecure-registry"}

func (c Cosign) run(args ...string) error {
	cmd := exec.Command(c.Bin, args...)
	cmd.Env = append(os.Environ(), c.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("cosign %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Sign signs ref (by digest); the signature names identity (the users'
// repository), not the loopback registry it was made in.
func (c Cosign) Sign(ref, identity string) error {
	return c.run(append([]string{"sign", "--key", c.Key, "--tlog-upload=false", "--yes",
		"--sign-container-identity", identity}, append(registryFlags, ref)...)...)
}

// Attest attaches predicate (an SPDX JSON file) as a signed in-toto
// attestation of type spdxjson.
func (c Cosign) Attest(ref, predicate string) error {
	return c.run(append([]string{"attest", "--key", c.Key, "--tlog-upload=false", "--yes",
		"--type", "spdxjson", "--predicate", predicate}, append(registryFlags, ref)...)...)
}

// Save writes ref with its signatures and attestations as an OCI layout.
func (c Cosign) Save(ref, dir string) error {
	return c.run(append([]string{"save", "--dir", dir}, append(registryFlags, ref)...)...)
}

// Load pushes what Save wrote to ref's repository, under ref's tag.
func (c Cosign) Load(dir, ref string) error {
	return c.run(append([]string{"load", "--dir", dir}, append(registryFlags, ref)...)...)
}

// releaseKey returns the private key to sign with: $DNSGUARD_RELEASE_KEY
// (a cosign key file; COSIGN_PASSWORD from the environment), else a key
// generated once per machine in cacheDir, outside every clone, so releases
// of one machine verify with one public key.
func releaseKey(cosign, cacheDir string) (key string, env []string, err error) {
	if k := os.Getenv("DNSGUARD_RELEASE_KEY"); k != "" {
		if _, err := os.Stat(k); err != nil {
			return "", nil, fmt.Errorf("DNSGUARD_RELEASE_KEY: %w", err)
		}
		if _, ok := os.LookupEnv("COSIGN_PASSWORD"); !ok {
			return "", nil, fmt.Errorf("DNSGUARD_RELEASE_KEY is set but COSIGN_PASSWORD is not (cosign would prompt)")
		}
		slog.Info("signing with the key in DNSGUARD_RELEASE_KEY", "key", k)
		return k, nil, nil
	}
	dir := filepath.Join(cacheDir, "release-key")
	key = filepath.Join(dir, "cosign.key")
	// The local key has an empty password: it guards nothing a user trusts.
	env = []string{"COSIGN_PASSWORD="}
	if _, err := os.Stat(key); err != nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", nil, fmt.Errorf("release key directory: %w", err)
		}
		cmd := exec.Command(cosign, "generate-key-pair")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("cosign generate-key-pair in %s: %w: %s", dir, err, out)
		}
	}
	slog.Warn("signing with this machine's local key, NOT the project's release key (set DNSGUARD_RELEASE_KEY and COSIGN_PASSWORD for that)", "key", key)
	return key, env, nil
}

// publicKey writes the public key of key to path.
func publicKey(c Cosign, path string) error {
	cmd := exec.Command(c.Bin, "public-key", "--key", c.Key, "--outfile", path)
	cmd.Env = append(os.Environ(), c.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cosign public-key: %w: %s", err, out)
	}
	return nil
}
