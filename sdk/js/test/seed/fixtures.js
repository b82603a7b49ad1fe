// @ts-check
// The two values the seed's "Write" snippet uses without defining them.

/** The 8-byte PNG signature and an empty IHDR-less body: enough bytes to store. */
export const imageBuffer = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 1, 2, 3])

export const svgBuffer = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>')
