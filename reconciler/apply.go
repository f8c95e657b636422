package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ApplyOptions are the options of one Apply.
type ApplyOptions struct {
	// Commit is recorded in the inventory with each object it writes.
	Commit string
	// DryRun runs the whole apply as a server-side dry run (the deletes of
	// the prune too): nothing is written, the inventory is untouched, and
	// the Result says what Apply would do.
	DryRun bool
	// AllowMassPrune lets a prune of more than Options.MassPruneRatio of the
	// inventory go ahead.
	AllowMassPrune bool
	// Expand, when set, gives the full object of an object of the set,
	// afresh at each call: the objects of the set may then be stand-ins
	// that hold only their identity (apiVersion, kind, metadata.name and
	// metadata.namespace), as a render.Cache keeps them. Apply and
	// ApplyDelta read an object's content through it where they need it
	// (to compare it with the live object, to encode what they send) and
	// do not keep what it returns, so that a whole-set apply of a large
	// set does not hold every object in full at once.
	Expand func(*unstructured.Unstructured) (*unstructured.Unstructured, error)
}

// Apply makes the target match objects, the complete desired set of one
// commit: it applies what differs, in stages, prunes what the inventory
// holds and the set no longer does, and records the set in the inventory.
//
// Before anything is written, every object that would be written is
// validated by a server-side dry run; if the target refuses any, Apply
// returns an *InvalidError listing all of them. On an error after writes
// began, the Result says what was done before it (it may be nil).
func (m *Manager) Apply(ctx context.Context, objects []*unstructured.Unstructured, opts ApplyOptions) (*Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("commit", opts.Commit)
	ctx = logr.NewContext(ctx, log)
	p, err := m.plan(ctx, objects, opts.Expand)
	if err != nil {
		return nil, err
	}
	prev, err := m.readInventory(ctx)
	if err != nil {
		return nil, err
	}
	return m.apply(ctx, p, prev, pruneCandidates(prev.entries(), p.keys()), opts, false)
}

// apply compares, validates and applies the plan, prunes the candidates
// and writes the inventory. With incremental, the plan holds only the
// changed objects of the set: the inventory keeps the entries of the
// others.
func (m *Manager) apply(ctx context.Context, p *plan, prev *storedInventory, candidates []InventoryEntry, opts ApplyOptions, incremental bool) (*Result, error) {
	log := logr.FromContextOrDiscard(ctx)
	start := time.Now()
	if !opts.AllowMassPrune && massPrune(len(candidates), prev.count(), m.opts.MassPruneRatio) {
		return nil, fmt.Errorf("%w: %d of the %d objects of the inventory would be pruned, more than %.0f%%; allow it explicitly to go ahead",
			ErrMassPrune, len(candidates), prev.count(), 100*m.opts.MassPruneRatio)
	}
	if err := m.classify(ctx, p.ready()); err != nil {
		return nil, err
	}
	p.markCRDChanges(!opts.DryRun)
	log.V(1).Info("compared with the live objects", "objects", len(p.items), "duration", time.Since(start))
	invalid, err := m.validate(ctx, p.ready(), false)
	if err != nil {
		return nil, err
	}
	log.V(1).Info("validated by a dry run", "duration", time.Since(start))
	if invalid = append(p.invalid, invalid...); len(invalid) > 0 {
		return nil, &InvalidError{Errors: invalid}
	}

	res := &Result{Commit: opts.Commit}
	if opts.DryRun {
		for _, it := range p.deferred() {
			// Its kind or namespace is created by the set: it does not exist,
			// and cannot be dry-run before they are.
			it.action = Created
		}
		res.Changes = p.changes()
		pruned := m.prune(ctx, candidates, true)
		res.Changes = append(res.Changes, pruned.changes()...)
		return res, pruned.err()
	}

	if err := m.applyStages(ctx, p); err != nil {
		res.Changes = p.doneChanges()
		if p.wrote() {
			// Keep track of what this run created, so that a later apply
			// can prune it; the last applied commit does not move.
			head := Inventory{Commit: prev.Commit, AppliedAt: prev.AppliedAt}
			if werr := m.writeOverlay(ctx, prev, head, nil, p.doneChanges(), opts.Commit); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		return res, err
	}
	pruned := m.prune(ctx, candidates, false)
	res.Changes = append(p.changes(), pruned.changes()...)
	inv := &Inventory{Commit: opts.Commit, AppliedAt: time.Now()}
	if incremental {
		err = m.writeOverlay(ctx, prev, *inv, pruned, p.doneChanges(), opts.Commit)
	} else {
		inv.Entries = nextInventory(prev.entries(), p.doneChanges(), pruned.failed(), opts.Commit, true)
		err = m.writeInventory(ctx, prev, inv)
	}
	if err != nil {
		return res, errors.Join(pruned.err(), err)
	}
	return res, pruned.err()
}

// changes returns the action of every item, in stage order.
func (p *plan) changes() []Change {
	out := make([]Change, 0, len(p.items))
	for _, it := range p.items {
		if it.action != "" {
			out = append(out, Change{Object: it.ref, Action: it.action})
		}
	}
	return out
}

// doneChanges returns the items in place on the target.
func (p *plan) doneChanges() []Change {
	var out []Change
	for _, it := range p.items {
		if it.done {
			out = append(out, Change{Object: it.ref, Action: it.action})
		}
	}
	return out
}

func (p *plan) wrote() bool {
	for _, it := range p.items {
		if it.done && it.action != Unchanged {
			return true
		}
	}
	return false
}

// validate dry-runs every item that would be written, in parallel, and
// settles its action: Unchanged (the dry run changes nothing), Created,
// Configured or Recreated. It returns every object the target refused; an
// error that is not a refusal (the target unreachable, ...) is returned
// alone. keepDry keeps the dry-run results (for Diff).
//
// The dry run of an object that does not exist yet is the apply too, not a
// dry-run create, although a create costs the apiserver 10-15% less CPU
// (measured with 5,000 new objects): a create accepts what an apply refuses, such
// as two entries with the same key in a list keyed by name (two env vars
// MODE), and the write of such an object would fail after others were made.
func (m *Manager) validate(ctx context.Context, items []*item, keepDry bool) ([]error, error) {
	var todo []*item
	for _, it := range items {
		switch it.state {
		case stateUnchanged:
			it.action = Unchanged
		case stateCreate, stateCheck:
			todo = append(todo, it)
		}
	}
	refusals := make([]error, len(todo))
	var failure error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parallel(ctx, m.opts.Workers, len(todo), func(ctx context.Context, i int) {
		it := todo[i]
		decode := keepDry || it.state == stateCheck
		dry, err := m.ssa(ctx, it, true, decode)
		switch {
		case err == nil:
		case it.state == stateCheck && isImmutable(err):
			fields, _ := immutableFields(err)
			if m.mayRecreate(it.ref.GroupKind()) {
				it.state, it.action = stateRecreate, Recreated
				return
			}
			refusals[i] = m.immutableErr(it, fields, err)
			return
		case refused(err) && it.crdChanging:
			// A dry run only (else it would be deferred): the schema that
			// refused it is about to change. Say what the apply would do,
			// unvalidated.
			if it.state == stateCreate {
				it.state, it.action = stateApply, Created
			} else {
				it.state, it.action = stateApply, Configured
			}
			return
		case refused(err):
			refusals[i] = objectErr(it.ref, "dry run", err)
			return
		default:
			// The first failure stops the others (which then fail with a
			// cancelled context).
			once.Do(func() {
				failure = objectErr(it.ref, "dry run", err)
				cancel()
			})
			return
		}
		it.validated = true
		if keepDry {
			it.dry = dry
		}
		switch {
		case it.state == stateCreate:
			it.state, it.action = stateApply, Created
		case sameObject(dry.Object, it.live.Object):
			it.state, it.action = stateUnchanged, Unchanged
		default:
			it.state, it.action = stateApply, Configured
		}
	})
	if failure != nil {
		return nil, failure
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []error
	for _, err := range refusals {
		if err != nil {
			out = append(out, err)
		}
	}
	return out, nil
}

func isImmutable(err error) bool {
	_, ok := immutableFields(err)
	return ok
}

func (m *Manager) immutableErr(it *item, fields []string, err error) *ImmutableError {
	e := &ImmutableError{Object: it.ref, Fields: fields, Err: err}
	if it.live != nil {
		if obj, cerr := it.content(); cerr == nil {
			e.Changed = changedUnder(obj.Object, it.live.Object, fields)
		}
	}
	return e
}

// fieldValidation is the field validation of an apply: strict, so that an
// unknown or duplicate field is refused, except for the write of a body a
// strict dry run has just accepted. Strict validation decodes the body a
// second time on the server: ~5% of its CPU for an apply, spent twice for
// the same verdict.
func fieldValidation(dryRun, validated bool) string {
	if validated && !dryRun {
		return "Ignore"
	}
	return "Strict"
}

// ssa sends one server-side apply of the item, forced, with strict field
// validation unless a dry run validated the same body (fieldValidation).
// The answer is decoded only when asked for.
func (m *Manager) ssa(ctx context.Context, it *item, dryRun, decode bool) (*unstructured.Unstructured, error) {
	if it.body == nil {
		// Encoded once for the dry run and the apply.
		obj, err := it.content()
		if err != nil {
			return nil, err
		}
		body, err := json.Marshal(obj.Object)
		if err != nil {
			return nil, err
		}
		it.body = body
	}
	req := m.rest.Patch(types.ApplyPatchType).
		AbsPath(resourcePath(it.gvr, it.ref.Namespace, it.ref.Name)).
		Param("fieldManager", m.opts.FieldManager).
		Param("force", "true").
		Param("fieldValidation", fieldValidation(dryRun, it.validated)).
		Body(it.body)
	if dryRun {
		req = req.Param("dryRun", metav1.DryRunAll)
	}
	res := req.Do(ctx)
	// Error, unlike Raw, decodes the Status of a failure (its causes).
	if err := res.Error(); err != nil || !decode {
		return nil, err
	}
	raw, err := res.Raw()
	if err != nil {
		return nil, err
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("decode the answer: %w", err)
	}
	return out, nil
}

// sameObject reports whether a dry-run result is the live object: only the
// times of managedFields entries may differ.
func sameObject(dry, live map[string]any) bool {
	return equal(withoutFieldTimes(dry), withoutFieldTimes(live))
}

func withoutFieldTimes(obj map[string]any) map[string]any {
	md, ok := obj["metadata"].(map[string]any)
	if !ok {
		return obj
	}
	entries, _ := md["managedFields"].([]any)
	stripped := make([]any, len(entries))
	for i, e := range entries {
		em, _ := e.(map[string]any)
		c := make(map[string]any, len(em))
		for k, v := range em {
			if k != "time" {
				c[k] = v
			}
		}
		stripped[i] = c
	}
	mdc := make(map[string]any, len(md))
	for k, v := range md {
		mdc[k] = v
	}
	mdc["managedFields"] = stripped
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	out["metadata"] = mdc
	return out
}

// applyStages applies the plan stage after stage. The deferred items are
// looked at and dry-run after the CRDs and Namespaces stages; a failure
// stops the apply at the end of its stage.
func (m *Manager) applyStages(ctx context.Context, p *plan) error {
	for s := stage(0); s < numStages; s++ {
		if s == stageCluster {
			if deferred := p.deferred(); len(deferred) > 0 {
				if err := m.prepareDeferred(ctx, deferred); err != nil {
					return err
				}
			}
		}
		var items []*item
		for _, it := range p.items {
			if it.stage == s {
				items = append(items, it)
			}
		}
		start := time.Now()
		if err := m.applyItems(ctx, items); err != nil {
			return err
		}
		if len(items) > 0 {
			logr.FromContextOrDiscard(ctx).V(1).Info("stage applied", "stage", s.String(), "objects", len(items), "duration", time.Since(start))
		}
		if s == stageCRDs {
			if err := m.waitCRDs(ctx, items); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyItems applies the items of one stage in parallel.
func (m *Manager) applyItems(ctx context.Context, items []*item) error {
	errs := make([]error, len(items))
	parallel(ctx, m.opts.Workers, len(items), func(ctx context.Context, i int) {
		it := items[i]
		switch it.state {
		case stateUnchanged:
			it.done = true
		case stateApply:
			errs[i] = m.applyOne(ctx, it)
		case stateRecreate:
			errs[i] = m.recreate(ctx, it)
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func (m *Manager) applyOne(ctx context.Context, it *item) error {
	_, err := m.ssa(ctx, it, false, false)
	if err == nil {
		it.done = true
		return nil
	}
	// The dry run passed: the object changed on the target in between.
	if fields, ok := immutableFields(err); ok {
		if !m.mayRecreate(it.ref.GroupKind()) {
			return m.immutableErr(it, fields, err)
		}
		return m.recreate(ctx, it)
	}
	return objectErr(it.ref, "apply", err)
}

// recreate deletes the live object, waits until it is gone, and applies
// the desired one.
func (m *Manager) recreate(ctx context.Context, it *item) error {
	ri := m.dyn.Resource(it.gvr).Namespace(it.ref.Namespace)
	live, err := ri.Get(ctx, it.ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return objectErr(it.ref, "recreate", err)
	default:
		uid := live.GetUID()
		policy := metav1.DeletePropagationBackground
		err := ri.Delete(ctx, it.ref.Name, metav1.DeleteOptions{
			PropagationPolicy: &policy,
			Preconditions:     &metav1.Preconditions{UID: &uid},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return objectErr(it.ref, "recreate: delete", err)
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, m.opts.WaitTimeout, true, func(ctx context.Context) (bool, error) {
			cur, err := ri.Get(ctx, it.ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return err == nil && cur.GetUID() != uid, err
		})
		if err != nil {
			return objectErr(it.ref, "recreate: wait until deleted", err)
		}
	}
	if _, err := m.ssa(ctx, it, false, false); err != nil {
		return objectErr(it.ref, "recreate: apply (the object is deleted)", err)
	}
	it.action, it.done = Recreated, true
	return nil
}

// prepareDeferred looks at and dry-runs the deferred items, once the CRDs
// and Namespaces of the set are applied.
func (m *Manager) prepareDeferred(ctx context.Context, items []*item) error {
	m.mapper.Reset()
	for _, it := range items {
		if err := m.waitServed(ctx, it); err != nil {
			return err
		}
	}
	if err := m.classify(ctx, items); err != nil {
		return err
	}
	// A changed CRD is Established already, but the apiserver takes a
	// moment to validate its objects against the new schema: the objects of
	// a changed CRD get a few more tries.
	deadline := time.Now().Add(min(m.opts.WaitTimeout, 5*time.Second))
	for {
		invalid, err := m.validate(ctx, items, false)
		if err != nil {
			return err
		}
		if len(invalid) == 0 {
			return nil
		}
		var again []*item
		for _, it := range items {
			if it.crdChanging && (it.state == stateCreate || it.state == stateCheck) {
				again = append(again, it)
			}
		}
		if len(again) < len(invalid) || time.Now().After(deadline) {
			return &InvalidError{Errors: invalid, Partial: true}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		items = again
	}
}

// waitServed waits until discovery serves the item's kind.
func (m *Manager) waitServed(ctx context.Context, it *item) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, m.opts.WaitTimeout, true, func(ctx context.Context) (bool, error) {
		rm, err := m.mapper.RESTMapping(it.ref.GroupKind(), it.ref.Version)
		if err != nil {
			lastErr = err
			m.mapper.Reset()
			return false, nil
		}
		it.gvr = rm.Resource
		return true, nil
	})
	if err != nil {
		return objectErr(it.ref, "wait until its kind is served", errors.Join(err, lastErr))
	}
	return nil
}

// waitCRDs waits until every CRD of the set is Established, then resets
// discovery so that their kinds are found.
func (m *Manager) waitCRDs(ctx context.Context, crds []*item) error {
	var mu sync.Mutex
	var errs []error
	parallel(ctx, m.opts.Workers, len(crds), func(ctx context.Context, i int) {
		it := crds[i]
		if it.live != nil && it.action == Unchanged && established(it.live) {
			return
		}
		var last *unstructured.Unstructured
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, m.opts.WaitTimeout, true, func(ctx context.Context) (bool, error) {
			crd, err := m.dyn.Resource(it.gvr).Get(ctx, it.ref.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			last = crd
			return established(crd), nil
		})
		if err != nil {
			if last != nil {
				err = fmt.Errorf("%w (conditions: %s)", err, conditions(last))
			}
			mu.Lock()
			errs = append(errs, objectErr(it.ref, "wait until Established", err))
			mu.Unlock()
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(crds) > 0 {
		m.mapper.Reset()
	}
	return errors.Join(errs...)
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		if cm["type"] == "Established" && cm["status"] == "True" {
			return true
		}
	}
	return false
}

func conditions(obj *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	var parts []string
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		parts = append(parts, fmt.Sprintf("%v=%v %v", cm["type"], cm["status"], cm["message"]))
	}
	return strings.Join(parts, "; ")
}
