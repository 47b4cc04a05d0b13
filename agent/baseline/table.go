package baseline

import (
	"container/heap"
	"time"
)

// table is a map whose items are ordered by their last-seen time in a
// min-heap, so that the least recently seen item is found in O(1) and
// evicted in O(log n).
type table[V any] struct {
	items map[string]*item[V]
	order seenHeap[V]
}

type item[V any] struct {
	key   string
	value V
	seen  time.Time
	// saved is the last-seen time as the state file holds it, or the zero
	// time when the item is not in the file.
	saved time.Time
	index int
}

func newTable[V any]() *table[V] {
	return &table[V]{items: make(map[string]*item[V])}
}

func (t *table[V]) len() int { return len(t.items) }

func (t *table[V]) get(key string) (*item[V], bool) {
	it, ok := t.items[key]
	return it, ok
}

// put inserts or replaces the item at key and returns it.
func (t *table[V]) put(key string, value V, seen time.Time) *item[V] {
	if it, ok := t.items[key]; ok {
		it.value = value
		t.setSeen(it, seen)
		return it
	}
	it := &item[V]{key: key, value: value, seen: seen}
	t.items[key] = it
	heap.Push(&t.order, it)
	return it
}

func (t *table[V]) setSeen(it *item[V], seen time.Time) {
	it.seen = seen
	heap.Fix(&t.order, it.index)
}

// oldest returns the least recently seen item.
func (t *table[V]) oldest() (*item[V], bool) {
	if len(t.order) == 0 {
		return nil, false
	}
	return t.order[0], true
}

func (t *table[V]) remove(it *item[V]) {
	heap.Remove(&t.order, it.index)
	delete(t.items, it.key)
}

// trim removes items last seen before cutoff, then the least recently seen
// items until at most max remain. It returns the number removed.
func (t *table[V]) trim(cutoff time.Time, max int) int {
	removed := 0
	for {
		it, ok := t.oldest()
		if !ok || (!it.seen.Before(cutoff) && len(t.items) <= max) {
			return removed
		}
		t.remove(it)
		removed++
	}
}

type seenHeap[V any] []*item[V]

func (h seenHeap[V]) Len() int { return len(h) }

func (h seenHeap[V]) Less(i, j int) bool {
	if h[i].seen.Equal(h[j].seen) {
		return h[i].key < h[j].key
	}
	return h[i].seen.Before(h[j].seen)
}

func (h seenHeap[V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *seenHeap[V]) Push(x any) {
	it := x.(*item[V])
	it.index = len(*h)
	*h = append(*h, it)
}

func (h *seenHeap[V]) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.index = -1
	return it
}
