// Errors raised by the node runtime: one class per condition, each with a
// stable `name` callers match on. Messages say what happened and what to do.

export class NativeError extends Error {
  override name = 'NativeError'
}

/** An OCI image layout is missing a file, a reference, or has malformed JSON. */
export class ImageLayoutError extends NativeError {
  override name = 'ImageLayoutError'
}

/** A blob's bytes do not hash to the digest (or size) its descriptor names. */
export class DigestMismatchError extends NativeError {
  override name = 'DigestMismatchError'
}

/** A layer entry names a path outside the rootfs (`../`, absolute escape). */
export class PathTraversalError extends NativeError {
  override name = 'PathTraversalError'
}

/** A layer symlink points outside the rootfs, or a write would go through one that does. */
export class SymlinkEscapeError extends NativeError {
  override name = 'SymlinkEscapeError'
}

/** A layer hard link has an absolute or escaping target, or a target that is not in the rootfs. */
export class HardlinkError extends NativeError {
  override name = 'HardlinkError'
}

/** A layer carries a device node and the runtime cannot (rootless) or will not create it. */
export class DeviceNodeError extends NativeError {
  override name = 'DeviceNodeError'
}

/** A layer uses a media type or tar entry type this runtime does not handle. */
export class UnsupportedLayerError extends NativeError {
  override name = 'UnsupportedLayerError'
}

/** Neither runc nor crun (or not the one asked for) is installed. */
export class RuntimeNotFoundError extends NativeError {
  override name = 'RuntimeNotFoundError'
}

/** The OCI runtime binary exited non-zero; `stderr` holds what it said. */
export class RuntimeCommandError extends NativeError {
  override name = 'RuntimeCommandError'
  constructor (message: string, readonly exitCode: number | null, readonly stderr: string) {
    super(message)
  }
}

export class CapsuleNotFoundError extends NativeError {
  override name = 'CapsuleNotFoundError'
}

export class CapsuleExistsError extends NativeError {
  override name = 'CapsuleExistsError'
}

/** The capsule exists but is not in a state that allows the operation (exec into a stopped one). */
export class CapsuleStateError extends NativeError {
  override name = 'CapsuleStateError'
}

/** A capsule run spec failed its zod schema; `issues` carries zod's paths. */
export class InvalidSpecError extends NativeError {
  override name = 'InvalidSpecError'
}

/** A volume names a host path that is not declared as allowed. */
export class VolumeNotAllowedError extends NativeError {
  override name = 'VolumeNotAllowedError'
}

/** A capsule asks for more GPUs than the node has, or a CDI device that no spec defines. */
export class GpuUnavailableError extends NativeError {
  override name = 'GpuUnavailableError'
}

/** A CDI spec file is not valid JSON/YAML-as-JSON or fails the schema. */
export class CdiSpecError extends NativeError {
  override name = 'CdiSpecError'
}

/** The chosen OCI runtime cannot work in this setup (crun rootless on a cgroup v1 hybrid host). */
export class RuntimeUnsupportedError extends NativeError {
  override name = 'RuntimeUnsupportedError'
}

/** The capsule's waiter (the shell that runs the OCI runtime) could not be set up. */
export class WaiterError extends NativeError {
  override name = 'WaiterError'
}

/** The capsule's rootfs could not be mounted or copied. */
export class RootfsError extends NativeError {
  override name = 'RootfsError'
}

/** A capsule asks for the gaming profile (input and sound devices) on a node whose config does not allow it. */
export class GamingNotAllowedError extends NativeError {
  override name = 'GamingNotAllowedError'
}
