package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Keys of the two objects the controller keeps, the same in a Secret and
// as file names in a directory.
//
// The CA object (Secret "<fullname>-ca", or directory DIR/ca) holds ca.crt
// (the current CA), ca.key and ca-previous.crt (the CA before the last
// rotation, trusted until it expires; its key is discarded). Only the
// controller reads it.
//
// The serving object (Secret "<fullname>-tls" of type kubernetes.io/tls, or
// directory DIR) holds tls.crt, tls.key and ca.crt, the trust bundle: the
// current CA, then the previous one while it is valid. ca.crt is the
// conventional key (cert-manager writes it too), so a client can be pointed
// at it with curl --cacert.
const (
	SecretKeyCA         = "ca.crt"
	SecretKeyCAKey      = "ca.key"
	SecretKeyCAPrevious = "ca-previous.crt"
	SecretKeyCert       = corev1.TLSCertKey
	SecretKeyKey        = corev1.TLSPrivateKeyKey
	caCommonName        = "dnsguard-webhook-ca"
	defaultDomain       = "cluster.local"
	managedByLabel      = "app.kubernetes.io/managed-by"
	managedByValue      = "dnsguard-certs"
)

// object names one of the two things a store keeps.
type object int

const (
	caObject object = iota
	servingObject
)

// store is where the controller keeps its objects: Secrets in a cluster,
// or files in a directory for a webhook that runs outside one (make run,
// URL mode, the test suites). The lifecycle above it is the same.
type store interface {
	// load returns the object's data; nil data (and no error) when it does
	// not exist. version is handed back to save, so that a concurrent
	// writer makes save fail instead of being overwritten.
	load(ctx context.Context, o object) (data map[string][]byte, version any, err error)
	// save writes exactly data (keys not in it are removed); version is
	// what load returned (nil: create).
	save(ctx context.Context, o object, data map[string][]byte, version any) error
	// name is the object's name for logs and errors.
	name(o object) string
}

// secretStore keeps the objects in two Secrets of one namespace.
type secretStore struct {
	client    kubernetes.Interface
	namespace string
	names     [2]string // by object
	// owner, set by each Reconcile while the webhook configuration exists,
	// goes into every Secret saved (see ownCertificates). With ownedOnly, a
	// Secret is never created without one: the configuration can vanish
	// between ownCertificates' look and a create later in the same
	// Reconcile (the uninstall hook deletes it, then the Secrets), and a
	// Secret created then, with no owner, outlived the release (e2e c8).
	owner     *metav1.OwnerReference
	ownedOnly bool
}

func (s *secretStore) name(o object) string { return s.namespace + "/" + s.names[o] }

func (s *secretStore) load(ctx context.Context, o object) (map[string][]byte, any, error) {
	cur, err := s.client.CoreV1().Secrets(s.namespace).Get(ctx, s.names[o], metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get secret %s: %w", s.name(o), err)
	}
	if o == servingObject && cur.Type != corev1.SecretTypeTLS {
		// The type is immutable; replacing someone else's Secret is not
		// ours to decide.
		return nil, nil, fmt.Errorf("secret %s has type %q, want %q: delete it or choose another name", s.name(o), cur.Type, corev1.SecretTypeTLS)
	}
	if cur.Data == nil {
		cur.Data = map[string][]byte{} // exists, but empty: not "missing"
	}
	return cur.Data, cur, nil
}

func (s *secretStore) save(ctx context.Context, o object, data map[string][]byte, version any) error {
	api := s.client.CoreV1().Secrets(s.namespace)
	if version == nil {
		typ := corev1.SecretTypeOpaque
		if o == servingObject {
			typ = corev1.SecretTypeTLS
		}
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.names[o], Namespace: s.namespace, Labels: map[string]string{managedByLabel: managedByValue}},
			Type:       typ,
			Data:       data,
		}
		if s.ownedOnly && s.owner == nil {
			return fmt.Errorf("create secret %s: %w", s.name(o), ErrNoWebhookConfig)
		}
		setOwner(sec, s.owner)
		if _, err := api.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create secret %s: %w", s.name(o), err)
		}
		return nil
	}
	upd := version.(*corev1.Secret).DeepCopy()
	upd.Data = data
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	upd.Labels[managedByLabel] = managedByValue
	setOwner(upd, s.owner)
	// The update carries the resourceVersion read by load: a concurrent
	// writer (a second leader after a partition, a `--once` run) makes it
	// fail with a conflict, and the next reconcile starts from a fresh read.
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update secret %s: %w", s.name(o), err)
	}
	return nil
}

// fileStore keeps the serving object in dir and the CA object in dir/ca,
// one file per key; keys are written 0600, certificates 0644.
type fileStore struct{ dir string }

// fileKeys lists, per object, the files it may hold, in the order they are
// written: key before certificate, so a server that reloads when tls.crt
// changes finds the matching key already in place.
var fileKeys = [2][]string{
	caObject:      {SecretKeyCAKey, SecretKeyCA, SecretKeyCAPrevious},
	servingObject: {SecretKeyCA, SecretKeyKey, SecretKeyCert},
}

func (f *fileStore) path(o object) string {
	if o == caObject {
		return filepath.Join(f.dir, "ca")
	}
	return f.dir
}

func (f *fileStore) name(o object) string { return f.path(o) }

func (f *fileStore) load(_ context.Context, o object) (map[string][]byte, any, error) {
	var data map[string][]byte
	for _, k := range fileKeys[o] {
		b, err := os.ReadFile(filepath.Join(f.path(o), k))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", filepath.Join(f.path(o), k), err)
		}
		if data == nil {
			data = map[string][]byte{}
		}
		data[k] = b
	}
	return data, nil, nil
}

func (f *fileStore) save(_ context.Context, o object, data map[string][]byte, _ any) error {
	dir := f.path(o)
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", f.dir, err)
	}
	if o == caObject {
		// Private: the CA key must not be readable by the webhook's user.
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	for _, k := range fileKeys[o] {
		p := filepath.Join(dir, k)
		v, ok := data[k]
		if !ok {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove %s: %w", p, err)
			}
			continue
		}
		m := os.FileMode(0o644)
		if k == SecretKeyCAKey || k == SecretKeyKey {
			m = 0o600
		}
		if err := writeAtomic(p, v, m); err != nil {
			return err
		}
	}
	return nil
}

// loadStoredCA loads the signing CA: the first certificate of ca.crt with
// ca.key.
func loadStoredCA(data map[string][]byte) (*CA, error) {
	if len(data[SecretKeyCA]) == 0 || len(data[SecretKeyCAKey]) == 0 {
		return nil, errors.New("no ca.crt or no ca.key")
	}
	c, err := ParseCertificate(data[SecretKeyCA])
	if err != nil {
		return nil, err
	}
	return LoadCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), data[SecretKeyCAKey])
}

// tlsPairOK checks that tls.crt and tls.key belong together.
func tlsPairOK(data map[string][]byte) (*x509.Certificate, error) {
	if len(data[SecretKeyCert]) == 0 || len(data[SecretKeyKey]) == 0 {
		return nil, errors.New("no tls.crt or no tls.key")
	}
	c, err := ParseCertificate(data[SecretKeyCert])
	if err != nil {
		return nil, err
	}
	if _, err := tls.X509KeyPair(data[SecretKeyCert], data[SecretKeyKey]); err != nil {
		return nil, fmt.Errorf("tls.crt and tls.key do not match: %w", err)
	}
	return c, nil
}
