package org.blksnap.nbd;

import java.util.List;

/**
 * What option haggling settled for the transmission phase.
 *
 * @param export             the open export (closed by the connection when it ends)
 * @param transmissionFlags  the flags sent to the client
 * @param structuredReplies  whether NBD_OPT_STRUCTURED_REPLY was acknowledged
 * @param contexts           the selected metadata contexts; a context's id is its index
 * @param sizes              the advertised block size constraints
 */
record Negotiated(Export export, int transmissionFlags, boolean structuredReplies, List<MetaContext> contexts,
                  BlockSizes sizes) {
    boolean readOnly() {
        return (transmissionFlags & NbdTransmissionDescriptor.FLAG_READ_ONLY) != 0;
    }
}
