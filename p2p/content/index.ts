// The content part of the agent: blob store, registry client, piece
// exchange (/bolt/pieces/1), provider records, image pulls and objects.
// The agent wires these; nothing here knows about admission or membership.
export * from './errors.js'
export { BlobStore, type BlobInfo, type BlobStoreOptions, type StoreUsage } from './blob-store.js'
export { PartialBlob } from './partial-blob.js'
export { Bitfield } from './bitfield.js'
export { digestToCid, cidToDigest, digestHex, isDigest, sha256Digest } from './digest.js'
export { DEFAULT_PIECE_SIZE, pieceCount, pieceSizeFor, type PieceManifest } from './pieces.js'
export { RegistryClient, type RegistryClientOptions, type RegistryCredential, type ResolvedManifest } from './registry-client.js'
export { parseReference, formatReference, type ImageReference } from './reference.js'
export { hostPlatform, type ImageManifest, type Platform } from './oci.js'
export { PieceExchange, DEFAULT_UPLOAD_SLOTS, type PieceExchangeInit, type PullOptions, type PullProgress, type PullStats, type ExchangeCounters, type OpenStream } from './piece-exchange.js'
export { PIECES_PROTOCOL } from './piece-messages.js'
export { PiecePicker, type PickerConfig, type PickerAction } from './piece-picker.js'
export { DhtProviderSource, MemoryProviderTable, type ProviderSource } from './providers.js'
export { ImagePuller, REF_NAME_ANNOTATION, type ImagePullerInit, type ImagePullProgress, type PulledImage, type ImageRecord } from './image-puller.js'
export { ObjectStore, type ObjectStoreInit, type ObjectManifest, type PutResult, type GetResult, type ReplicaChooser } from './objects.js'
export { chunkBuffer, chunkFile, DEFAULT_CDC, type CdcParams } from './fastcdc.js'
