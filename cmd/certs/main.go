// Command certs keeps dnsguard's TLS material current.
//
//	certs controller --once --out-dir=DIR [--hosts=127.0.0.1,localhost,::1]
//
// issues a CA and a serving certificate into DIR (renewing them when due)
// and exits: what make run and the local test suites use. In a cluster the
// same controller runs as a Deployment and keeps two Secrets and caBundle
// current (see controller.go). `certs cleanup` is the chart's pre-delete
// hook. Subcommands are registered in their own files.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// subcommand runs one verb with its own flag set; it returns an error for
// main to print.
type subcommand struct {
	summary string
	run     func(args []string) error
}

var subcommands = map[string]subcommand{}

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

// restConfig prefers an explicit kubeconfig, then the in-cluster config,
// then $KUBECONFIG / ~/.kube/config through the usual loading rules.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	if c, err := rest.InClusterConfig(); err == nil {
		return c, nil
	}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no in-cluster config and no usable kubeconfig: %w", err)
	}
	return c, nil
}

// clientset is a Kubernetes client from restConfig that names itself with
// userAgent in the API server's logs and audit events.
func clientset(kubeconfig, userAgent string) (kubernetes.Interface, error) {
	c, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	c.UserAgent = userAgent
	client, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

// podNamespace reads the namespace of the pod's ServiceAccount token.
func podNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
