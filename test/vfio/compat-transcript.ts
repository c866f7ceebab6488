/**
 * The model's answers to oracle/probes/compat-probe.c, printed line for line in the probe's format, so a test
 * can compare them with the real kernel's transcript (oracle/probes/compat-probe.out.txt).
 */
import * as S from "../../src/index.js";
import { IommuError } from "../../src/errno.js";
import { U64_MAX } from "../../src/util/u64.js";
import { UserArg } from "./helpers.js";

const APER = 0x1000000n;

function rcOf(fn: () => number | void): string {
  try {
    const r = fn();
    return `rc=${typeof r === "number" ? r : 0} errno=0`;
  } catch (e) {
    if (e instanceof IommuError) return `rc=-1 errno=${e.errno}`;
    throw e;
  }
}

export function compatTranscript(): string[] {
  const out: string[] = [];
  const host = new S.Host();
  const p = host.spawn({ uid: 0 });
  const raw = p.mmap(4 << 20);
  const buf = BigInt(Math.ceil(raw / (2 << 20)) * (2 << 20));
  p.write(Number(buf), new Uint8Array(2 << 20).fill(1));
  const robuf = BigInt(p.mmap(0x4000, { prot: S.PROT_READ, populate: true }));

  {
    const ctx = S.openIommufd(host, p);
    for (let e = 0; e <= 11; e++) out.push(`fresh CHECK_EXTENSION(${e}) ${rcOf(() => ctx.vfioCheckExtension(e))}`);
    for (const t of [0, 1, 2, 3, 6, 8, 9, 10]) out.push(`fresh SET_IOMMU(${t}) ${rcOf(() => ctx.vfioSetIommu(t))}`);
    const a = new UserArg(p);
    a.setU32(0, 16);
    out.push(`fresh GET_INFO ${rcOf(() => ctx.vfioIommuGetInfo(a.ptr))}`);
    // (no close: IommufdCtx.release double-destroys objects, see compat.test.ts)
  }

  for (const [tag, type] of [
    ["v2", S.VFIO_TYPE1v2_IOMMU],
    ["v1", S.VFIO_TYPE1_IOMMU],
  ] as const) {
    const ctx = S.openIommufd(host, p);
    const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
    const arg = new UserArg(p);
    const vmap = (flags: number, vaddr: bigint, iova: bigint, size: bigint): string =>
      rcOf(() => ctx.vfioIommuMapDma(arg.dmaMap({ flags, vaddr, iova, size })));
    const unmap = (what: string, flags: number, iova: bigint, size: bigint): void => {
      const r = rcOf(() => ctx.vfioIommuUnmapDma(arg.dmaUnmap({ flags, iova, size: BigInt.asUintN(64, size) })));
      out.push(`${tag} ${what} ${r} size_out=0x${arg.u64(16).toString(16)}`);
    };
    const line = (what: string, r: string): void => {
      out.push(`${tag} ${what} ${r}`);
    };

    line("DMA_CC no-compat-ioas", rcOf(() => ctx.vfioCheckExtension(S.VFIO_DMA_CC_IOMMU)));
    ctx.vfioIoas({ ioas_id: ioas, op: S.IOMMU_VFIO_IOAS_SET });
    line("DMA_CC ioas-without-hwpt", rcOf(() => ctx.vfioCheckExtension(S.VFIO_DMA_CC_IOMMU)));
    line("mock_domain", rcOf(() => void ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas })));
    line("DMA_CC mock-hwpt", rcOf(() => ctx.vfioCheckExtension(S.VFIO_DMA_CC_IOMMU)));
    line("SET_IOMMU(2)", rcOf(() => ctx.vfioSetIommu(2)));
    line(`SET_IOMMU(${type})`, rcOf(() => ctx.vfioSetIommu(type)));

    for (let a = 16; a <= 80; a += a < 24 ? 8 : a < 48 ? 4 : 8) {
      arg.fill(0xaa);
      arg.setU32(0, a);
      const r = rcOf(() => ctx.vfioIommuGetInfo(arg.ptr));
      const b = arg.bytes(256);
      let n = 0;
      for (let i = 0; i < b.length; i++) if (b[i] !== 0xaa) n = i + 1;
      out.push(`${tag} GET_INFO argsz=${a} ${r} bytes=${Buffer.from(b.subarray(0, n)).toString("hex")}`);
    }

    line("MAP flags=0", vmap(0, buf, APER, 0x1000n));
    unmap("unmap flags=0 map", 0, APER, 0x1000n);
    line("MAP RW|VADDR", vmap(3 | S.VFIO_DMA_MAP_FLAG_VADDR, buf, APER, 0x1000n));
    line("MAP VADDR", vmap(S.VFIO_DMA_MAP_FLAG_VADDR, buf, APER, 0x1000n));
    line("MAP size=0", vmap(3, buf, APER, 0n));
    line("MAP 2K iova/vaddr/size", vmap(3, buf + 0x800n, APER + 0x800n, 0x800n));
    unmap("unmap 2K", 0, APER + 0x800n, 0x800n);
    line("MAP vaddr off 0x800 iova aligned", vmap(3, buf + 0x800n, APER, 0x1000n));
    unmap("unmap", 0, APER, 0x1000n);
    line("MAP iova=0 (below aperture)", vmap(3, buf, 0n, 0x1000n));
    line("MAP iova=2^31 (above aperture)", vmap(3, buf, 0x80000000n, 0x1000n));
    line("MAP straddling aperture end", vmap(3, buf, 0x7ffff000n, 0x2000n));
    line("MAP iova wraps", vmap(3, buf, U64_MAX - 0xfffn, 0x2000n));
    line("MAP unmapped vaddr", vmap(3, 0x1000n, APER, 0x1000n));
    line("MAP RW of read-only memory", vmap(3, robuf, APER, 0x1000n));
    line("MAP READ of read-only memory", vmap(S.VFIO_DMA_MAP_FLAG_READ, robuf, APER, 0x1000n));
    unmap("unmap", 0, APER, 0x1000n);

    line("MAP A [APER,+16K)", vmap(3, buf, APER, 0x4000n));
    line("MAP B [APER+16K,+16K)", vmap(3, buf, APER + 0x4000n, 0x4000n));
    line("MAP overlapping", vmap(3, buf, APER + 0x2000n, 0x1000n));

    unmap("UNMAP size=0", 0, APER, 0n);
    unmap("UNMAP GET_DIRTY_BITMAP", S.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, APER, 0x1000n);
    unmap("UNMAP VADDR", S.VFIO_DMA_UNMAP_FLAG_VADDR, APER, 0x1000n);
    unmap("UNMAP ALL iova!=0", S.VFIO_DMA_UNMAP_FLAG_ALL, APER, 0n);
    unmap("UNMAP wraps", 0, U64_MAX - 0xfffn, 0x2000n);
    unmap("UNMAP unaligned 0x800", 0, APER + 0x800n, 0x800n);
    unmap("UNMAP A + half of B", 0, APER, 0x6000n);
    unmap("UNMAP rest", 0, APER, 0x8000n);
    {
      const r1 = vmap(3, buf, APER, 0x4000n);
      const r2 = vmap(3, buf, APER + 0x4000n, 0x4000n);
      out.push(`${tag} remap A B rc=${r1 === "rc=0 errno=0" && r2 === "rc=0 errno=0" ? 0 : -1}`);
    }
    unmap("UNMAP A+B exactly", 0, APER, 0x8000n);
    {
      const r1 = vmap(3, buf, APER, 0x4000n);
      const r2 = vmap(3, buf, APER + 0x8000n, 0x4000n);
      out.push(`${tag} map A C rc=${r1 === "rc=0 errno=0" && r2 === "rc=0 errno=0" ? 0 : -1}`);
    }
    unmap("UNMAP ALL", S.VFIO_DMA_UNMAP_FLAG_ALL, 0n, 0n);
    unmap("UNMAP ALL empty", S.VFIO_DMA_UNMAP_FLAG_ALL, 0n, 0n);
    vmap(3, buf, APER, 0x4000n);
    unmap("UNMAP tail page", 0, APER + 0x3000n, 0x1000n);
    unmap("UNMAP head page", 0, APER, 0x1000n);
    unmap("UNMAP from 0 to APER+0x2000", 0, 0n, APER + 0x2000n);
    unmap("UNMAP 0..2^64-4K", 0, 0n, U64_MAX - 0xfffn);

    vmap(3, buf, APER, 0x4000n);
    unmap("UNMAP middle page", 0, APER + 0x1000n, 0x1000n);
    unmap("UNMAP all of A", 0, APER, 0x4000n);
    vmap(3, buf, APER, 0x4000n);
    const other = type === 1 ? 3 : 1;
    line("SET_IOMMU other type with a mapping", rcOf(() => ctx.vfioSetIommu(other)));
    unmap("UNMAP ALL", S.VFIO_DMA_UNMAP_FLAG_ALL, 0n, 0n);
    line("SET_IOMMU other type, nothing mapped", rcOf(() => ctx.vfioSetIommu(other)));
    vmap(3, buf, APER, 0x4000n);
    unmap("after switch UNMAP middle page", 0, APER + 0x1000n, 0x1000n);
    line("GET_API_VERSION", rcOf(() => ctx.vfioGetApiVersion()));
    // (no close: IommufdCtx.release double-destroys objects, see compat.test.ts)
  }
  return out;
}
