/** The base of every object in a context's ID space (struct iommufd_object). */
import type { ObjType } from "./types.js";

export abstract class IommufdObject {
  abstract readonly type: ObjType;
  /** Assigned when the ID is reserved; 0 before. */
  id = 0;
  /** One for the ID table, plus one per object/driver that depends on this one. */
  users = 1;
  /** Tear down everything this object holds (called once, when it leaves the table). */
  abstract destroy(): void;
}
