// Package rotation is the certificate-rotation scenario: pods are created
// at a steady rate while the certificate controller renews the serving
// certificate and rotates the CA, and every pod is checked as the API
// server stored it. It takes its clients from the caller, so the same
// scenario runs against the loopback control plane of test/e2e
// (TestCertRotation) and against a real cluster with the chart installed.
package rotation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dnsguard/dnsguard/certs"
)

// Config is one run of the scenario.
type Config struct {
	// Client creates the pods and reads the serving Secret.
	Client kubernetes.Interface
	// Namespace the webhook mutates; pods are created (and deleted) here.
	Namespace string
	// SecretNamespace/SecretName: the serving Secret the controller writes
	// (chart: <release namespace>/<fullname>-tls).
	SecretNamespace, SecretName string
	// Duration of the run (at least a few leaf lifetimes and one CA
	// rotation) and Interval between two pod creations.
	Duration, Interval time.Duration
	// Patched decides whether a stored pod was mutated; default: dnsPolicy
	// None with nameservers (the dnsconfig mode).
	Patched func(*corev1.Pod) bool
	// Served, when set, returns the certificate the webhook presents now
	// (a TLS handshake); polled every second.
	Served func(ctx context.Context) (*x509.Certificate, error)
	// Image of the pods' only container (never pulled without a kubelet).
	Image string
	// NodeSelector keeps the pods Pending on a cluster with a node (what is
	// tested is admission; hundreds of running pods would only load the
	// node).
	NodeSelector map[string]string
	// Logf reports progress (default: nothing).
	Logf func(format string, args ...any)
}

// Result is what the run observed.
type Result struct {
	// Created pods, of which Failed were refused by the API server (a
	// failed admission) and Unpatched were stored without the mutation.
	Created, Failed, Unpatched int
	// Errors are the first few creation errors / unpatched pod names.
	Errors []string
	// Leaves and CAs count the distinct serving certificates and signing
	// CAs seen in the serving Secret during the run.
	Leaves, CAs int
	// ServedLeaves counts distinct certificates the webhook presented;
	// ServedExpired counts observations of an expired one.
	ServedLeaves, ServedExpired int
}

// DefaultPatched is the dnsconfig-mode check.
func DefaultPatched(p *corev1.Pod) bool {
	return p.Spec.DNSPolicy == corev1.DNSNone && p.Spec.DNSConfig != nil && len(p.Spec.DNSConfig.Nameservers) > 0
}

// Run runs the scenario and deletes the pods it created.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.SecretName == "" || cfg.SecretNamespace == "" {
		return nil, errors.New("rotation: client, namespace and serving secret are required")
	}
	if cfg.Duration <= 0 || cfg.Interval <= 0 {
		return nil, errors.New("rotation: duration and interval must be positive")
	}
	if cfg.Patched == nil {
		cfg.Patched = DefaultPatched
	}
	if cfg.Image == "" {
		cfg.Image = "registry.example/app:1"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	res := &Result{}
	var mu sync.Mutex
	note := func(s string) {
		if len(res.Errors) < 10 {
			res.Errors = append(res.Errors, s)
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup

	// Observer: the serving Secret, once a second.
	leaves, cas := map[string]bool{}, map[string]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if s, err := cfg.Client.CoreV1().Secrets(cfg.SecretNamespace).Get(runCtx, cfg.SecretName, metav1.GetOptions{}); err == nil {
				if c, err := certs.ParseCertificate(s.Data[corev1.TLSCertKey]); err == nil {
					mu.Lock()
					if !leaves[c.SerialNumber.String()] {
						cfg.Logf("serving secret: leaf %s notAfter %s issuer %x", c.SerialNumber, c.NotAfter.Format(time.TimeOnly), c.AuthorityKeyId)
					}
					leaves[c.SerialNumber.String()] = true
					cas[fmt.Sprintf("%x", c.AuthorityKeyId)] = true
					mu.Unlock()
				}
			}
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	if cfg.Served != nil {
		served := map[string]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				if c, err := cfg.Served(runCtx); err == nil {
					mu.Lock()
					served[c.SerialNumber.String()] = true
					res.ServedLeaves = len(served)
					if time.Now().After(c.NotAfter) {
						res.ServedExpired++
					}
					mu.Unlock()
				}
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}

	// Load: one pod per Interval, each creation in its own goroutine so a
	// slow admission does not slow the rate.
	tick := time.NewTicker(cfg.Interval)
	i := 0
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-tick.C:
		}
		i++
		name := fmt.Sprintf("rot-%05d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cfg.Namespace, Labels: map[string]string{"dnsguard-e2e": "rotation"}},
				Spec:       corev1.PodSpec{NodeSelector: cfg.NodeSelector, Containers: []corev1.Container{{Name: "app", Image: cfg.Image}}},
			}
			// Its own deadline: the run's end must not cancel a creation in
			// flight and count it as failed.
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			defer ccancel()
			stored, err := cfg.Client.CoreV1().Pods(cfg.Namespace).Create(cctx, pod, metav1.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			res.Created++
			switch {
			case err != nil:
				res.Failed++
				note(fmt.Sprintf("%s %s: %v", time.Now().Format(time.TimeOnly), name, err))
			case !cfg.Patched(stored):
				res.Unpatched++
				note(fmt.Sprintf("%s %s stored unpatched (dnsPolicy %s)", time.Now().Format(time.TimeOnly), name, stored.Spec.DNSPolicy))
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	res.Leaves, res.CAs = len(leaves), len(cas)
	cfg.Logf("created %d pods: %d failed, %d unpatched; %d leaves, %d CAs in the secret; %d leaves served", res.Created, res.Failed, res.Unpatched, res.Leaves, res.CAs, res.ServedLeaves)

	dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
	defer dcancel()
	zero := int64(0)
	if err := cfg.Client.CoreV1().Pods(cfg.Namespace).DeleteCollection(dctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
		metav1.ListOptions{LabelSelector: "dnsguard-e2e=rotation"}); err != nil {
		cfg.Logf("cleanup: delete pods: %v", err)
	}
	return res, nil
}
