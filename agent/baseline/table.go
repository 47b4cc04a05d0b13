package baseline

import (
	"container/heap"
	"time"
)

// table is a map of items that belong to hosts, bounded in total and per
// host. Two kinds of heap keep eviction at O(log n): each host's items by
// last-seen time, and the hosts with the most items first.
type table[V any] struct {
	// maxPerHost and maxTotal are the bounds that enforce applies.
	maxPerHost, maxTotal int

	items map[string]*item[V]
	hosts map[string]*hostItems[V]
	// bySize holds every host with items, the largest first.
	bySize hostHeap[V]
	// evicted counts the items that enforce removed.
	evicted uint64
}

type item[V any] struct {
	key   string
	host  *hostItems[V]
	value V
	seen  time.Time
	// saved is the last-seen time as the state file holds it, or the zero
	// time when the item is not in the file.
	saved time.Time
	// index is the item's position in host.order.
	index int
}

// hostItems is the part of a table that belongs to one host.
type hostItems[V any] struct {
	name string
	// order holds the host's items, least recently seen first.
	order itemHeap[V]
	index int
}

func newTable[V any](maxPerHost, maxTotal int) *table[V] {
	return &table[V]{
		maxPerHost: maxPerHost,
		maxTotal:   maxTotal,
		items:      make(map[string]*item[V]),
		hosts:      make(map[string]*hostItems[V]),
	}
}

func (t *table[V]) len() int { return len(t.items) }

func (t *table[V]) get(key string) (*item[V], bool) {
	it, ok := t.items[key]
	return it, ok
}

// insert adds or replaces the item of host at key and returns it. It does
// not enforce the bounds.
func (t *table[V]) insert(host, key string, value V, seen time.Time) *item[V] {
	if it, ok := t.items[key]; ok {
		it.value = value
		t.setSeen(it, seen)
		return it
	}
	h, ok := t.hosts[host]
	if !ok {
		h = &hostItems[V]{name: host}
		t.hosts[host] = h
		heap.Push(&t.bySize, h)
	}
	it := &item[V]{key: key, host: h, value: value, seen: seen}
	t.items[key] = it
	heap.Push(&h.order, it)
	heap.Fix(&t.bySize, h.index)
	return it
}

func (t *table[V]) setSeen(it *item[V], seen time.Time) {
	it.seen = seen
	heap.Fix(&it.host.order, it.index)
	heap.Fix(&t.bySize, it.host.index)
}

func (t *table[V]) remove(it *item[V]) {
	h := it.host
	heap.Remove(&h.order, it.index)
	delete(t.items, it.key)
	if h.order.Len() == 0 {
		heap.Remove(&t.bySize, h.index)
		delete(t.hosts, h.name)
		return
	}
	heap.Fix(&t.bySize, h.index)
}

// hostLen returns the number of items of host.
func (t *table[V]) hostLen(host string) int {
	if h, ok := t.hosts[host]; ok {
		return h.order.Len()
	}
	return 0
}

// trim removes the items last seen before cutoff, then enforces the
// bounds. It returns the number of items removed. It visits every host,
// which costs less than keeping all items in one more heap, because
// trim runs once per Save and the heaps change on every Touch.
func (t *table[V]) trim(cutoff time.Time) int {
	var old []*hostItems[V]
	for _, h := range t.bySize {
		if h.order.items[0].seen.Before(cutoff) {
			old = append(old, h)
		}
	}
	removed := 0
	for _, h := range old {
		for h.order.Len() > 0 && h.order.items[0].seen.Before(cutoff) {
			t.remove(h.order.items[0])
			removed++
		}
	}
	return removed + t.enforce()
}

// enforce evicts the least recently seen item of the host with the most
// items while that host has more than maxPerHost items or the table more
// than maxTotal. A host over its quota thus loses its own items first,
// and past the total bound the largest host shrinks. Among hosts of equal
// size the one whose oldest item is older loses it. It returns the number
// of items evicted.
func (t *table[V]) enforce() int {
	evicted := 0
	for t.bySize.Len() > 0 {
		h := t.bySize[0]
		if h.order.Len() <= t.maxPerHost && len(t.items) <= t.maxTotal {
			break
		}
		t.remove(h.order.items[0])
		evicted++
	}
	t.evicted += uint64(evicted)
	return evicted
}

// itemHeap orders items by last-seen time, then by key. It keeps each
// item's position in item.index.
type itemHeap[V any] struct {
	items []*item[V]
}

func (h *itemHeap[V]) Len() int { return len(h.items) }

func (h *itemHeap[V]) Less(i, j int) bool { return seenBefore(h.items[i], h.items[j]) }

func (h *itemHeap[V]) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index = i
	h.items[j].index = j
}

func (h *itemHeap[V]) Push(x any) {
	it := x.(*item[V])
	it.index = len(h.items)
	h.items = append(h.items, it)
}

func (h *itemHeap[V]) Pop() any {
	n := len(h.items) - 1
	it := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	it.index = -1
	return it
}

func seenBefore[V any](a, b *item[V]) bool {
	if a.seen.Equal(b.seen) {
		return a.key < b.key
	}
	return a.seen.Before(b.seen)
}

// hostHeap orders hosts by their number of items, the largest first, then
// by their least recently seen item. Keys include the host, so items of
// two hosts never tie.
type hostHeap[V any] []*hostItems[V]

func (h hostHeap[V]) Len() int { return len(h) }

func (h hostHeap[V]) Less(i, j int) bool {
	a, b := h[i], h[j]
	if na, nb := a.order.Len(), b.order.Len(); na != nb {
		return na > nb
	}
	if a.order.Len() == 0 {
		return a.name < b.name
	}
	return seenBefore(a.order.items[0], b.order.items[0])
}

func (h hostHeap[V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *hostHeap[V]) Push(x any) {
	hi := x.(*hostItems[V])
	hi.index = len(*h)
	*h = append(*h, hi)
}

func (h *hostHeap[V]) Pop() any {
	old := *h
	hi := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	hi.index = -1
	return hi
}
