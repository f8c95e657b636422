package snapshot

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"filippo.io/age"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// EncryptedAnnotation marks a Secret whose data values are sealed.
const EncryptedAnnotation = "dr-syncer.io/encrypted"

// A sealed value reads ENC[AGE,v1,<mac>,<ciphertext>]: the base64 of a
// keyed MAC of the plaintext (bound to namespace, name and key, so that equal
// values of two Secrets do not show as equal), and the base64 of the age
// ciphertext. The MAC lets the next snapshot see that a value did not change
// and keep its ciphertext, so an unchanged Secret gives no diff.
const (
	sealedPrefix = "ENC[AGE,v1,"
	sealedSuffix = "]"
	macSize      = 16
)

// Sealer encrypts the data of Secrets with age.
type Sealer struct {
	recipients []age.Recipient
	macKey     []byte
}

// NewSealer returns a Sealer that encrypts to recipients (age recipient
// strings) and authenticates values with macKey (see MACKey).
func NewSealer(recipients []string, macKey []byte) (*Sealer, error) {
	if len(recipients) == 0 {
		return nil, fmt.Errorf("secrets: no age recipient")
	}
	if len(macKey) < 32 {
		return nil, fmt.Errorf("secrets: MAC key too short")
	}
	rs, err := age.ParseRecipients(strings.NewReader(strings.Join(recipients, "\n")))
	if err != nil {
		return nil, fmt.Errorf("secrets: recipients: %w", err)
	}
	return &Sealer{recipients: rs, macKey: macKey}, nil
}

// MACKey derives the key that authenticates sealed values from an age
// identity: whoever can decrypt the Secrets can also tell whether they
// changed, and nobody else can test guesses of a value against the MAC.
func MACKey(identity *age.X25519Identity) ([]byte, error) {
	return hkdf.Key(sha256.New, []byte(identity.String()), nil, "dr-syncer secret value mac v1", 32)
}

func (s *Sealer) mac(namespace, name, key string, plaintext []byte) []byte {
	h := hmac.New(sha256.New, s.macKey)
	for _, part := range []string{namespace, name, key} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	h.Write(plaintext)
	return h.Sum(nil)[:macSize]
}

// Seal replaces every value of secret's data (and stringData, folded into
// data) with a sealed one. A value whose plaintext is the same as in
// previous (the Secret as last recorded, or nil) keeps its previous sealed
// form byte for byte.
func (s *Sealer) Seal(secret, previous *unstructured.Unstructured) error {
	ns, name := secret.GetNamespace(), secret.GetName()
	plain := map[string][]byte{}
	data, _, err := unstructured.NestedMap(secret.Object, "data")
	if err != nil {
		return fmt.Errorf("Secret/%s/%s: data: %w", ns, name, err)
	}
	for k, v := range data {
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("Secret/%s/%s: data.%s: not a string", ns, name, k)
		}
		b, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			return fmt.Errorf("Secret/%s/%s: data.%s: not base64", ns, name, k)
		}
		plain[k] = b
	}
	stringData, _, _ := unstructured.NestedStringMap(secret.Object, "stringData")
	for k, v := range stringData {
		plain[k] = []byte(v) // stringData wins over data, as in the apiserver
	}
	var prev map[string]any
	if previous != nil && previous.GetAnnotations()[EncryptedAnnotation] == "age" {
		prev, _, _ = unstructured.NestedMap(previous.Object, "data")
	}

	sealed := make(map[string]any, len(plain))
	for k, p := range plain {
		mac := s.mac(ns, name, k, p)
		if pv, ok := prev[k].(string); ok {
			if pmac, _, err := parseSealed(pv); err == nil && hmac.Equal(pmac, mac) {
				sealed[k] = pv
				continue
			}
		}
		ct, err := s.encrypt(p)
		if err != nil {
			return fmt.Errorf("Secret/%s/%s: data.%s: %w", ns, name, k, err)
		}
		sealed[k] = sealedPrefix + base64.StdEncoding.EncodeToString(mac) + "," + base64.StdEncoding.EncodeToString(ct) + sealedSuffix
	}
	delete(secret.Object, "stringData")
	if len(sealed) > 0 {
		secret.Object["data"] = sealed
	}
	ann := secret.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[EncryptedAnnotation] = "age"
	secret.SetAnnotations(ann)
	return nil
}

func (s *Sealer) encrypt(plaintext []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, s.recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func parseSealed(v string) (mac, ciphertext []byte, err error) {
	body, ok := strings.CutPrefix(v, sealedPrefix)
	if ok {
		body, ok = strings.CutSuffix(body, sealedSuffix)
	}
	macB64, ctB64, found := strings.Cut(body, ",")
	if !ok || !found {
		return nil, nil, fmt.Errorf("not a sealed value")
	}
	if mac, err = base64.StdEncoding.DecodeString(macB64); err != nil {
		return nil, nil, fmt.Errorf("sealed value: mac: %w", err)
	}
	if ciphertext, err = base64.StdEncoding.DecodeString(ctB64); err != nil {
		return nil, nil, fmt.Errorf("sealed value: ciphertext: %w", err)
	}
	return mac, ciphertext, nil
}

// Unseal decrypts a sealed Secret in place with identities, giving back a
// Secret whose data holds the plaintext (base64, as the API wants it). A
// Secret without the EncryptedAnnotation is left as it is.
func Unseal(secret *unstructured.Unstructured, identities ...age.Identity) error {
	ann := secret.GetAnnotations()
	if ann[EncryptedAnnotation] != "age" {
		return nil
	}
	ns, name := secret.GetNamespace(), secret.GetName()
	data, _, err := unstructured.NestedMap(secret.Object, "data")
	if err != nil {
		return fmt.Errorf("Secret/%s/%s: data: %w", ns, name, err)
	}
	for k, v := range data {
		str, _ := v.(string)
		_, ct, err := parseSealed(str)
		if err != nil {
			return fmt.Errorf("Secret/%s/%s: data.%s: %w", ns, name, k, err)
		}
		r, err := age.Decrypt(bytes.NewReader(ct), identities...)
		if err != nil {
			return fmt.Errorf("Secret/%s/%s: data.%s: decrypt: %w", ns, name, k, err)
		}
		p, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("Secret/%s/%s: data.%s: decrypt: %w", ns, name, k, err)
		}
		data[k] = base64.StdEncoding.EncodeToString(p)
	}
	if len(data) > 0 {
		secret.Object["data"] = data
	}
	delete(ann, EncryptedAnnotation)
	if len(ann) == 0 {
		ann = nil // no empty map left behind for the apply to own
	}
	secret.SetAnnotations(ann)
	return nil
}

// sealing seals Secrets on every core (age encryption is the costly part)
// as Take lists them, looking up each one's previous recorded form so that
// unchanged values keep their ciphertext. Sealing after the last LIST made
// a full snapshot wait for encryption that could have run meanwhile.
type sealing struct {
	in chan *unstructured.Unstructured
	wg sync.WaitGroup
}

// startSealing starts the sealers; fail is called with each error, and once
// ctx is done the Secrets still queued are dropped.
func startSealing(ctx context.Context, opts Options, fail func(error)) *sealing {
	s := &sealing{in: make(chan *unstructured.Unstructured, 64)}
	for range runtime.GOMAXPROCS(0) {
		s.wg.Go(func() {
			for o := range s.in {
				if ctx.Err() != nil {
					continue
				}
				if err := sealOne(ctx, o, opts); err != nil {
					fail(err)
				}
			}
		})
	}
	return s
}

// add queues a Secret; it waits while every sealer is busy.
func (s *sealing) add(o *unstructured.Unstructured) { s.in <- o }

// wait seals what is queued and stops the sealers; add must not be called
// any more.
func (s *sealing) wait() {
	close(s.in)
	s.wg.Wait()
}

func sealOne(ctx context.Context, o *unstructured.Unstructured, opts Options) error {
	var prev *unstructured.Unstructured
	if opts.Previous != nil {
		var err error
		if prev, err = opts.Previous(ctx, idOf(o)); err != nil {
			return fmt.Errorf("Secret/%s/%s: previous snapshot: %w", o.GetNamespace(), o.GetName(), err)
		}
	}
	return opts.Sealer.Seal(o, prev)
}
