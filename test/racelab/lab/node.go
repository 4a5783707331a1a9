package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Node runs commands in the node's network namespace: the netns backend's
// dg-<id>-node (through `ip netns exec`), or, for the cluster backend, the
// namespace the e2e binary already runs in (no prefix).
type Node struct {
	// Prefix is prepended to every command, e.g. ip netns exec dg-1234-node.
	Prefix []string
}

// Command is name args... in the node.
func (n Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append(append(append([]string{}, n.Prefix...), name), args...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// Run runs name args... in the node with stdin and returns its stdout; the
// error carries stderr, so a failing nft or conntrack says why.
func (n Node) Run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := n.Command(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
