package webhook

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func dnsService(ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"}}
	if len(ips) > 0 {
		s.Spec.ClusterIP = ips[0]
		s.Spec.ClusterIPs = ips
	}
	return s
}

func TestDNSDiscoveryRefresh(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset()
	d, err := NewDNSDiscovery(client, "kube-system/kube-dns", time.Minute, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(ctx); err == nil || len(d.Nameservers()) != 0 {
		t.Fatalf("missing Service: err %v, nameservers %v", err, d.Nameservers())
	}
	if _, err := client.CoreV1().Services("kube-system").Create(ctx, dnsService("10.96.0.10", "fd00::a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.96.0.10", "fd00::a"}; !reflect.DeepEqual(d.Nameservers(), want) {
		t.Fatalf("nameservers %v, want %v", d.Nameservers(), want)
	}
	// A failed re-check keeps the last known address.
	if err := client.CoreV1().Services("kube-system").Delete(ctx, "kube-dns", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(ctx); err == nil {
		t.Fatal("deleted Service: no error")
	}
	if len(d.Nameservers()) != 2 {
		t.Fatalf("lost nameservers after a failed re-check: %v", d.Nameservers())
	}
	// Headless Service: an error naming it.
	headless := dnsService()
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	if _, err := client.CoreV1().Services("kube-system").Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(ctx); err == nil {
		t.Fatal("headless Service accepted")
	}
}

func TestDNSDiscoveryRunFollowsChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewSimpleClientset(dnsService("10.96.0.10"))
	d, err := NewDNSDiscovery(client, "kube-system/kube-dns", 20*time.Millisecond, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(testConfig(), Options{Logger: quietLogger(), Nameservers: d})
	if rec := do(srv, "GET", "/readyz", "", nil); rec.Code != 503 {
		t.Fatalf("/readyz before discovery: %d", rec.Code)
	}
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	waitFor(t, func() bool { return reflect.DeepEqual(d.Nameservers(), []string{"10.96.0.10"}) })
	if rec := do(srv, "GET", "/readyz", "", nil); rec.Code != 200 {
		t.Fatalf("/readyz after discovery: %d", rec.Code)
	}
	// The Service is recreated with a new ClusterIP: the re-check follows.
	_ = client.CoreV1().Services("kube-system").Delete(ctx, "kube-dns", metav1.DeleteOptions{})
	if _, err := client.CoreV1().Services("kube-system").Create(ctx, dnsService("10.100.0.10"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return reflect.DeepEqual(d.Nameservers(), []string{"10.100.0.10"}) })
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func TestNewDNSDiscoveryBadName(t *testing.T) {
	for _, s := range []string{"kube-dns", "/x", "x/", ""} {
		if _, err := NewDNSDiscovery(fake.NewSimpleClientset(), s, time.Second, nil); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNamespaceModes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := func(name, mode string) *corev1.Namespace {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if mode != "" {
			n.Annotations = map[string]string{AnnotationNamespaceDefaultMode: mode}
		}
		return n
	}
	client := fake.NewSimpleClientset(ns("shop", ModeSidecar), ns("plain", ""))
	nm := NewNamespaceModes(client, 0, quietLogger())
	if got := nm.DefaultMode("shop"); got != "" {
		t.Fatalf("before sync: %q, want \"\" (flag default)", got)
	}
	if !nm.Start(ctx) {
		t.Fatal("informer did not sync")
	}
	if got := nm.DefaultMode("shop"); got != ModeSidecar {
		t.Errorf("shop: %q", got)
	}
	if got := nm.DefaultMode("plain"); got != "" {
		t.Errorf("plain: %q", got)
	}
	if got := nm.DefaultMode("missing"); got != "" {
		t.Errorf("missing: %q", got)
	}
	// Changes arrive through the watch, without an API call per admission.
	if _, err := client.CoreV1().Namespaces().Update(ctx, ns("plain", ModeOff), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return nm.DefaultMode("plain") == ModeOff })
	before := len(client.Actions())
	srv := NewServer(testConfig(), Options{Logger: quietLogger(), Namespaces: nm})
	out := postReview(t, srv, readCase(t, "clusterfirst-deployment-pod")) // namespace shop
	if len(out.Response.Patch) == 0 || !containsBytes(out.Response.Patch, SidecarName) {
		t.Errorf("namespace default sidecar not applied: %s", out.Response.Patch)
	}
	if after := len(client.Actions()); after != before {
		t.Errorf("admission made %d API calls", after-before)
	}
	var nilModes *NamespaceModes
	if nilModes.DefaultMode("shop") != "" {
		t.Error("nil NamespaceModes")
	}
}

func containsBytes(b []byte, s string) bool { return strings.Contains(string(b), s) }

// TestReadyzWaitsForNamespaceInformer: with namespace defaults on, /readyz
// must fail until the informer has synced, or a replica that just started
// would patch pods of "default-mode: off" namespaces with the flag default.
func TestReadyzWaitsForNamespaceInformer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	off := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{AnnotationNamespaceDefaultMode: ModeOff}}}
	nm := NewNamespaceModes(fake.NewSimpleClientset(off), 0, quietLogger())
	srv := NewServer(testConfig(), Options{Logger: quietLogger(), Namespaces: nm})
	rec := do(srv, "GET", "/readyz", "", nil)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "namespace informer") {
		t.Fatalf("/readyz before the namespace informer synced: %d %q, want 503 naming the informer", rec.Code, rec.Body.String())
	}
	if !nm.Start(ctx) {
		t.Fatal("informer did not sync")
	}
	if rec := do(srv, "GET", "/readyz", "", nil); rec.Code != 200 {
		t.Fatalf("/readyz after sync: %d %q", rec.Code, rec.Body.String())
	}
	// Once ready, the namespace's annotation is honoured.
	out := postReview(t, srv, readCase(t, "clusterfirst-deployment-pod")) // namespace shop
	if len(out.Response.Patch) != 0 {
		t.Errorf("namespace default-mode off ignored after readiness: %s", out.Response.Patch)
	}
}
