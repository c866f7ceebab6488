/**
 * PASID sets: the VMM policy layer over the host's global PASID space, after the 2021 IOASID-set
 * proposal (seed 003; never merged upstream, where a VMM's guest PASIDs are plain numbers owned
 * through device ownership). Each VM gets a set with a quota; a guest PASID (the set-private ID,
 * SPID) is backed by a host PASID from the global allocator, and the two differ in general;
 * lookups go both ways within the set only, so a PASID allocated for one VM is not usable by
 * another; a VM's teardown frees everything its set holds.
 *
 * Errnos (the proposal's VFIO layer left them open; these are the model's choices, pinned by
 * tests): quota reached or host space exhausted → ENOSPC; a guest PASID already allocated in the
 * set → EEXIST; a PASID of another set, or none → EPERM for a host PASID (ownership), ENOENT for a
 * guest PASID lookup; freeing a PASID that is still bound → EBUSY.
 */
import { fail } from "../errno.js";
import { PASID_INVALID, PASID_MAX, type PasidAllocator } from "../iommu/pasid.js";

export class PasidSet {
  private readonly g2h = new Map<number, number>();
  private readonly h2g = new Map<number, number>();
  /** Host PASIDs with a live bind (free refuses them). */
  private readonly bound = new Map<number, number>();
  private dead = false;

  constructor(
    private readonly registry: PasidSets,
    /** Whose set this is (the VM). */
    readonly token: unknown,
    /** Most PASIDs the set may hold. */
    readonly quota: number,
  ) {}

  get size(): number {
    return this.g2h.size;
  }

  /**
   * Allocate a host PASID for guest PASID gpasid (1..2^20-1; the guest got it from its vIOMMU's
   * allocator or chose it). Returns the host PASID, below maxPasids (the device side's limit).
   */
  alloc(gpasid: number, maxPasids = PASID_MAX): number {
    this.live();
    if (!(Number.isInteger(gpasid) && gpasid > 0 && gpasid < PASID_MAX)) fail("EINVAL", `guest PASID ${gpasid} is not in 1..2^20-1`);
    if (this.g2h.has(gpasid)) fail("EEXIST", `guest PASID ${gpasid} is already allocated in this set`);
    if (this.g2h.size >= this.quota) fail("ENOSPC", `the set's quota of ${this.quota} PASIDs is used up`);
    const h = this.registry.space.allocGlobal(maxPasids);
    if (h === PASID_INVALID) fail("ENOSPC", "no host PASID is free");
    this.g2h.set(gpasid, h);
    this.h2g.set(h, gpasid);
    this.registry.owner.set(h, this);
    return h;
  }

  /** The host PASID behind guest PASID gpasid in this set (ENOENT when it has none). */
  hostOf(gpasid: number): number {
    const h = this.g2h.get(gpasid);
    if (h === undefined) fail("ENOENT", `guest PASID ${gpasid} is not allocated in this set`);
    return h;
  }

  /** The guest PASID of host PASID h (EPERM when h is not this set's). */
  guestOf(h: number): number {
    this.check(h);
    return this.h2g.get(h) as number;
  }

  /** Ownership: EPERM unless host PASID h was allocated in this set. */
  check(h: number): void {
    if (this.registry.owner.get(h) !== this) fail("EPERM", `host PASID ${h} does not belong to this VM`);
  }

  /** A bind of host PASID h starts / ends (free is refused while any is live). */
  hold(h: number): void {
    this.check(h);
    this.bound.set(h, (this.bound.get(h) ?? 0) + 1);
  }

  release(h: number): void {
    const n = this.bound.get(h);
    if (n === undefined) return;
    if (n <= 1) this.bound.delete(h);
    else this.bound.set(h, n - 1);
  }

  /** Free host PASID h of this set: EPERM when it is not this set's, EBUSY while it is bound. */
  free(h: number): void {
    this.live();
    this.check(h);
    if (this.bound.has(h)) fail("EBUSY", `host PASID ${h} is still bound`);
    this.drop(h);
  }

  private drop(h: number): void {
    const g = this.h2g.get(h) as number;
    this.h2g.delete(h);
    this.g2h.delete(g);
    this.registry.owner.delete(h);
    this.registry.space.freeGlobal(h);
  }

  /** The VM goes away: every PASID of the set goes back to the host (binds are the caller's to undo first). */
  destroy(): void {
    if (this.dead) return;
    for (const h of [...this.h2g.keys()]) this.drop(h);
    this.bound.clear();
    this.dead = true;
    this.registry.sets.delete(this.token);
  }

  /** [guest PASID, host PASID] pairs, guest order. */
  entries(): [number, number][] {
    return [...this.g2h].sort((a, b) => a[0] - b[0]);
  }

  private live(): void {
    if (this.dead) fail("EINVAL", "the PASID set was destroyed");
  }
}

/** Every VM's set over one host PASID space. */
export class PasidSets {
  readonly sets = new Map<unknown, PasidSet>();
  /** host PASID → the set that allocated it */
  readonly owner = new Map<number, PasidSet>();

  constructor(readonly space: PasidAllocator) {}

  /** A set for token (one per token: EEXIST for a second); quota 1..2^20-1. */
  create(token: unknown, quota: number): PasidSet {
    if (this.sets.has(token)) fail("EEXIST", "this VM already has a PASID set");
    if (!(Number.isInteger(quota) && quota > 0 && quota < PASID_MAX)) fail("EINVAL", `quota ${quota} is not in 1..2^20-1`);
    const s = new PasidSet(this, token, quota);
    this.sets.set(token, s);
    return s;
  }

  get(token: unknown): PasidSet | undefined {
    return this.sets.get(token);
  }
}
