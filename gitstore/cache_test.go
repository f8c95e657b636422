package gitstore

import (
	"fmt"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestObjectCacheBlobsCannotEvictTrees: the blobs of a large build (read
// once each) fill their own small LRU and leave the trees cached.
func TestObjectCacheBlobsCannotEvictTrees(t *testing.T) {
	obj := func(typ plumbing.ObjectType, content string) plumbing.EncodedObject {
		o := &plumbing.MemoryObject{}
		o.SetType(typ)
		if _, err := o.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		return o
	}
	c := newObjectCache()
	tree := obj(plumbing.TreeObject, "a tree")
	c.Put(tree)
	first := obj(plumbing.BlobObject, "blob 0")
	c.Put(first)
	if _, ok := c.Get(first.Hash()); !ok {
		t.Fatal("a blob just read is not cached")
	}
	// Twice the blob cache in blobs of 64 KiB.
	big := make([]byte, 64<<10)
	for i := range 2 * int(blobCacheSize) / len(big) {
		copy(big, fmt.Sprint(i))
		c.Put(obj(plumbing.BlobObject, string(big)))
	}
	if _, ok := c.Get(tree.Hash()); !ok {
		t.Error("blobs evicted a tree")
	}
	if _, ok := c.Get(first.Hash()); ok {
		t.Error("the blob cache holds more than blobCacheSize")
	}
}
