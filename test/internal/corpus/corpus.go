// Package corpus dry-run creates the golden pods of the webhook's fixture
// corpus (webhook/testdata: <case>.json reviews beside their
// <case>.golden.json patched objects, kept equal to what the handler writes
// by webhook/golden_test.go) on a real API server. test/quota runs it on the
// API server of the tool cache, test/compat on the oldest one the chart
// claims: a patched pod must be one each of them accepts. The API server's
// validation is the only judge; no copy of its rules is kept here.
package corpus

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// MinAccepted is how many golden pods at least must be dry-run created:
// skips (not a pod, DELETE, undecodable input) must not hollow the check
// out, most of the corpus is pods the API server has to accept.
const MinAccepted = 60

// DryRunGoldens runs one subtest per case of the corpus in dir and fails
// t when fewer than MinAccepted golden pods were accepted.
func DryRunGoldens(t *testing.T, client kubernetes.Interface, dir string) {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for _, f := range all {
		if strings.HasSuffix(f, ".golden.json") {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			if createGolden(t, client, strings.TrimSuffix(f, ".json")) {
				accepted++
			}
		})
	}
	if accepted < MinAccepted {
		t.Fatalf("only %d golden pods were dry-run created; the corpus has more", accepted)
	}
	t.Logf("%d golden pods accepted by kube-apiserver", accepted)
}

// createGolden dry-run creates base's golden pod; false when the case is
// not a pod creation.
func createGolden(t *testing.T, client kubernetes.Interface, base string) bool {
	t.Helper()
	in, err := os.ReadFile(base + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(in, &review); err != nil || review.Request == nil {
		t.Fatalf("not an AdmissionReview with a request: %v", err)
	}
	r := review.Request
	if r.Kind.Kind != "Pod" || r.SubResource != "" || r.Operation == admissionv1.Delete {
		t.Skipf("not a pod object: %s %s/%s", r.Operation, r.Kind.Kind, r.SubResource)
	}
	golden, err := os.ReadFile(base + ".golden.json")
	if err != nil {
		t.Fatalf("golden: %v (go test ./webhook -run TestGolden -update writes it)", err)
	}
	var typed corev1.Pod
	if err := json.Unmarshal(golden, &typed); err != nil {
		// The cases about input the webhook cannot read: it leaves it
		// alone, and the API server would refuse it anyway.
		t.Skipf("golden is not a decodable pod (%v)", err)
	}
	var pod map[string]any
	if err := json.Unmarshal(golden, &pod); err != nil {
		t.Fatal(err)
	}
	meta, _ := pod["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		pod["metadata"] = meta
	}
	ns := r.Namespace
	if ns == "" {
		ns = typed.Namespace
	}
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	// What only a stored object has (an UPDATE's object) cannot be sent
	// to create; the pod itself is unchanged.
	delete(meta, "resourceVersion")
	delete(meta, "uid")
	meta["namespace"] = ns
	if meta["name"] == nil && meta["generateName"] == nil {
		meta["generateName"] = "corpus-"
	}
	body, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	EnsureNamespace(t, client, ns, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = client.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").
		Param("dryRun", "All").SetHeader("Content-Type", "application/json").
		Body(body).Do(ctx).Error()
	if err != nil {
		t.Fatalf("kube-apiserver rejects the golden pod: %v", err)
	}
	return true
}

// EnsureNamespace creates ns with labels and its default ServiceAccount
// (no controller manager runs to do it; the ServiceAccount admission plugin
// needs it). Existing ones are left as they are.
func EnsureNamespace(t testing.TB, client kubernetes.Interface, ns string, labels map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client.CoreV1()
	if _, err := c.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	if _, err := c.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace %s: default ServiceAccount: %v", ns, err)
	}
}
