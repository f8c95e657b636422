package controller

import (
	"fmt"
	"runtime"
	"sync"

	yamlv2 "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// encodeObjects lays objects out as the files of snapshots/<source>/, on
// every core.
//
// A file is the object as YAML with its keys sorted, byte for byte what
// sigs.k8s.io/yaml.Marshal writes (a test holds them equal), but encoded
// straight from the map with yaml.v2: sigs.k8s.io/yaml goes through JSON and
// parses it back, which made encoding the largest cost of a snapshot of
// 10,000 objects (1.2 s against 0.45 s).
func encodeObjects(source string, objects []*unstructured.Unstructured) (map[string][]byte, error) {
	out := make([]encoded, len(objects))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(objects)/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(objects); i += workers {
				out[i] = encodeOne(source, objects[i])
			}
		})
	}
	wg.Wait()

	files := make(map[string][]byte, len(objects))
	for i, e := range out {
		if e.err != nil {
			return nil, e.err
		}
		if _, dup := files[e.path]; dup {
			return nil, fmt.Errorf("%s: two objects map to %s", idOf(objects[i]), e.path)
		}
		files[e.path] = e.data
	}
	return files, nil
}

// encoded is one object's file, or why there is none.
type encoded struct {
	path string
	data []byte
	err  error
}

func encodeOne(source string, o *unstructured.Unstructured) (e encoded) {
	id := idOf(o)
	if e.path, e.err = gitstore.ObjectPath(source, gitstore.ObjectID(id)); e.err != nil {
		e.err = fmt.Errorf("%s: %w", id, e.err)
		return e
	}
	if e.data, e.err = yamlv2.Marshal(o.Object); e.err != nil {
		e.err = fmt.Errorf("%s: encode: %w", id, e.err)
	}
	return e
}

func idOf(o *unstructured.Unstructured) snapshot.ID {
	return snapshot.ID{Group: o.GroupVersionKind().Group, Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}
