package policies

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// addFiles adds every file matching glob to the seed corpus of f.
func addFiles(f *testing.F, glob string, conv func([]byte) ([]byte, error)) {
	f.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files %s: %v", glob, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if conv != nil {
			if data, err = conv(data); err != nil {
				f.Fatalf("%s: %v", file, err)
			}
		}
		f.Add(data)
	}
}

// FuzzDecode: the mapping decoder never panics; every error it returns is
// a *FieldError naming the file, with a message; a mapping it accepts
// validates.
func FuzzDecode(f *testing.F) {
	addFiles(f, "testdata/valid/*.yaml", nil)
	addFiles(f, "testdata/invalid/*.yaml", nil)
	addFiles(f, "testdata/init/*.yaml", nil)
	const file = "fuzz/dr-syncer.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(file, data)
		if err != nil {
			if c != nil {
				t.Fatalf("Decode returned a config and an error: %v", err)
			}
			for _, e := range unjoin(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %q (%T) is not a *FieldError", e, e)
				}
				if fe.File != file || !strings.HasPrefix(e.Error(), file) {
					t.Fatalf("error %q does not name the file", e)
				}
				if fe.Err == nil || strings.TrimSpace(fe.Err.Error()) == "" {
					t.Fatalf("error %q does not say why", e)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("Decode returned neither a config nor an error")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Decode accepted a mapping that does not validate: %v\n%s", err, data)
		}
	})
}

// FuzzClean: Clean never panics on an object decoded from JSON, does not
// modify its input, and is idempotent.
func FuzzClean(f *testing.F) {
	addFiles(f, "testdata/clean/*.before.yaml", yaml.YAMLToJSON)
	f.Add([]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"managedFields":[{"fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:ports":{"k:{\"port\":80}":{}}}}}]},"spec":{"ports":[{"port":80.5,"nodePort":1}],"clusterIPs":["None"],"clusterIP":"10.0.0.1"}}`))
	f.Add([]byte(`{"apiVersion":"batch/v1","kind":"Job","metadata":{"labels":null,"annotations":{}},"spec":{"template":{"metadata":{"labels":{"controller-uid":"x"}}}}}`))
	f.Add([]byte(`{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"a"},"secrets":[{"name":"a-token-bcdfg"},null,1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return
		}
		before := u.DeepCopy()
		once := Clean(u)
		if !reflect.DeepEqual(before.Object, u.Object) {
			t.Fatalf("Clean modified its input:\n%s", data)
		}
		twice := Clean(once)
		if !reflect.DeepEqual(once.Object, twice.Object) {
			a, _ := json.Marshal(once.Object)
			b, _ := json.Marshal(twice.Object)
			t.Fatalf("Clean is not idempotent on\n%s\nonce:  %s\ntwice: %s", data, a, b)
		}
	})
}
