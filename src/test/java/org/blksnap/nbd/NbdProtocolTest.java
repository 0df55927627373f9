package org.blksnap.nbd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.blksnap.nbd.NbdHandshakeDescriptor.*;
import static org.blksnap.nbd.NbdTransmissionDescriptor.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.blksnap.engine.BlksnapException;
import org.blksnap.engine.Errno;
import org.blksnap.nbd.NbdTestClient.ExportData;
import org.blksnap.nbd.NbdTestClient.OptionReply;
import org.blksnap.nbd.NbdTestClient.Reply;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The protocol, in memory: the real server over pipes (no sockets), driven byte by byte by
 * {@link NbdTestClient}. Handshake, every option, every command, every error path.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class NbdProtocolTest {
    static final int SIZE = 4 << 20;
    static final int MiB = 1 << 20;

    TestExports exports;
    MemoryDevice disk;
    MemoryDevice ro;
    NbdServer server;
    NbdTestClient client;

    @BeforeEach
    void start() {
        exports = new TestExports();
        disk = new MemoryDevice("disk", SIZE);
        ro = new MemoryDevice("ro", SIZE);
        exports.add("disk", "the disk", disk, false);
        exports.add("ro", "", ro, true, new TestExports.DirtyBitmap("qemu:dirty-bitmap:b0", SIZE,
                new long[][] {{MiB, 65536}, {2 * MiB, MiB}}), new TestExports.DirtyBitmap("qemu:dirty-bitmap:b1", SIZE,
                new long[][] {}));
        server = new NbdServer(exports, NbdServer.Config.defaults().withShutdownGrace(java.time.Duration.ofSeconds(2)));
    }

    @AfterEach
    void stop() throws IOException {
        if (client != null) {
            client.close();
        }
        server.close();
    }

    NbdTestClient connect() throws IOException {
        client = PipeChannel.connect(server);
        return client;
    }

    static int infoType(OptionReply r) {
        return Short.toUnsignedInt(r.buffer().getShort(0));
    }

    @Nested
    class Handshake {
        @Test
        void greetingOffersFixedNewstyleAndNoZeroes() throws IOException {
            assertThat(connect().readGreeting()).isEqualTo(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        }

        @Test
        void unknownClientFlagsMakeTheServerDisconnect() throws IOException {
            NbdTestClient c = connect();
            c.readGreeting();
            c.sendClientFlags(CLIENT_FLAG_FIXED_NEWSTYLE | 0x100);
            assertThat(c.readToEnd()).isEmpty();
        }

        @Test
        void exportNameWithNoZeroesAnswersSizeAndFlagsOnly() throws IOException {
            NbdTestClient c = connect();
            c.start();
            c.sendOption(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            ByteBuffer r = c.readExactly(10);
            assertThat(r.getLong(0)).isEqualTo(SIZE);
            assertThat(r.getShort(8) & FLAG_HAS_FLAGS).isEqualTo(FLAG_HAS_FLAGS);
            assertThat(c.write(0, new byte[] {1, 2, 3}, 0)).isZero();
            assertThat(c.read(0, 3)).containsExactly(1, 2, 3);
        }

        @Test
        void exportNameWithoutNoZeroesAppends124ZeroBytes() throws IOException {
            NbdTestClient c = connect();
            c.readGreeting();
            c.sendClientFlags(CLIENT_FLAG_FIXED_NEWSTYLE);
            c.sendOption(OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            ByteBuffer r = c.readExactly(10 + 124);
            assertThat(r.getLong(0)).isEqualTo(SIZE);
            assertThat(Arrays.copyOfRange(r.array(), 10, 134)).containsOnly(0);
            assertThat(c.command(CMD_FLUSH, 0, 0, 0)).isZero();
        }

        @Test
        void exportNameOfAnUnknownExportDisconnects() throws IOException {
            NbdTestClient c = connect();
            c.start();
            c.sendOption(OPT_EXPORT_NAME, "nope".getBytes(StandardCharsets.UTF_8));
            assertThat(c.readToEnd()).isEmpty();
        }

        @Test
        void abortIsAcknowledgedThenTheServerCloses() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(c.option(OPT_ABORT, new byte[0])).extracting(OptionReply::type).containsExactly(REP_ACK);
            assertThat(c.readToEnd()).isEmpty();
        }

        @Test
        void listAnnouncesEveryExportWithItsDescription() throws IOException {
            NbdTestClient c = connect();
            c.start();
            List<OptionReply> replies = c.option(OPT_LIST, new byte[0]);
            assertThat(replies).extracting(OptionReply::type).containsExactly(REP_SERVER, REP_SERVER, REP_ACK);
            ByteBuffer first = replies.get(0).buffer();
            int len = first.getInt(0);
            assertThat(new String(replies.get(0).data(), 4, len, StandardCharsets.UTF_8)).isEqualTo("disk");
            assertThat(new String(replies.get(0).data(), 4 + len, replies.get(0).data().length - 4 - len,
                    StandardCharsets.UTF_8)).isEqualTo("the disk");
        }

        @Test
        void listWithDataIsInvalidAndTheConnectionStays() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(c.option(OPT_LIST, new byte[] {1})).extracting(OptionReply::type).containsExactly(REP_ERR_INVALID);
            assertThat(c.option(OPT_LIST, new byte[0])).last().extracting(OptionReply::type).isEqualTo(REP_ACK);
        }

        @Test
        void infoSendsExportNameDescriptionAndBlockSizeThenStaysInHaggling() throws IOException {
            NbdTestClient c = connect();
            c.start();
            List<OptionReply> replies = c.option(OPT_INFO, NbdTestClient.infoRequest("disk", INFO_NAME, INFO_DESCRIPTION,
                    INFO_BLOCK_SIZE));
            assertThat(replies.subList(0, 4)).extracting(NbdProtocolTest::infoType).containsExactly(INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION,
                    INFO_BLOCK_SIZE);
            assertThat(replies.get(0).buffer().getLong(2)).isEqualTo(SIZE);
            assertThat(new String(replies.get(1).data(), 2, 4, StandardCharsets.UTF_8)).isEqualTo("disk");
            assertThat(new String(replies.get(2).data(), 2, 8, StandardCharsets.UTF_8)).isEqualTo("the disk");
            ByteBuffer bs = replies.get(3).buffer();
            assertThat(List.of(bs.getInt(2), bs.getInt(6), bs.getInt(10))).containsExactly(1, 4096, 32 * MiB);
            assertThat(replies.get(4).type()).isEqualTo(REP_ACK);
            assertThat(c.option(OPT_LIST, new byte[0])).last().extracting(OptionReply::type).isEqualTo(REP_ACK);
        }

        @Test
        void infoThenGoWithTheSameArgumentsGiveIdenticalData() throws IOException {
            NbdTestClient c = connect();
            c.start();
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            byte[] request = NbdTestClient.infoRequest("ro", INFO_NAME, INFO_BLOCK_SIZE);
            List<OptionReply> info = c.option(OPT_INFO, request);
            List<OptionReply> go = c.option(OPT_GO, request);
            assertThat(go).hasSameSizeAs(info);
            for (int i = 0; i < info.size(); i++) {
                assertThat(go.get(i).type()).isEqualTo(info.get(i).type());
                assertThat(go.get(i).data()).isEqualTo(info.get(i).data());
            }
        }

        @Test
        void theEmptyNameSelectsTheDefaultExportAndNameInfoGivesItsCanonicalName() throws IOException {
            NbdTestClient c = connect();
            c.start();
            List<OptionReply> replies = c.option(OPT_INFO, NbdTestClient.infoRequest("", INFO_NAME));
            assertThat(replies.get(1).text().substring(2)).isEqualTo("disk");
        }

        @Test
        void infoOrGoOfAnUnknownExportIsErrUnknownAndTheConnectionStays() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(c.option(OPT_INFO, NbdTestClient.infoRequest("nope"))).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_UNKNOWN);
            List<OptionReply> go = c.option(OPT_GO, NbdTestClient.infoRequest("nope"));
            assertThat(go).extracting(OptionReply::type).containsExactly(REP_ERR_UNKNOWN);
            assertThat(go.get(0).text()).contains("nope");
            assertThat(c.negotiate("disk", false).sizeBytes()).isEqualTo(SIZE);
        }

        @Test
        void malformedInfoRequestsAreInvalid() throws IOException {
            NbdTestClient c = connect();
            c.start();
            byte[] good = NbdTestClient.infoRequest("disk", INFO_NAME);
            assertThat(c.option(OPT_INFO, Arrays.copyOf(good, good.length - 1))).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_INVALID);
            assertThat(c.option(OPT_INFO, ByteBuffer.allocate(6).putInt(0, 1000).array())).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_INVALID);
            assertThat(c.option(OPT_INFO, ByteBuffer.allocate(6).putInt(0, 5000).array())).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_TOO_BIG);
            byte[] badUtf8 = ByteBuffer.allocate(8).putInt(2).put((byte) 0xC3).put((byte) 0x28).putShort((short) 0).array();
            assertThat(c.option(OPT_INFO, badUtf8)).extracting(OptionReply::type).containsExactly(REP_ERR_INVALID);
        }

        @Test
        void unsupportedOptionsAreAnsweredUnsupAndTheConnectionStays() throws IOException {
            NbdTestClient c = connect();
            c.start();
            for (int option : new int[] {OPT_PEEK_EXPORT, OPT_STARTTLS, OPT_EXTENDED_HEADERS, 99, 0x7fffffff}) {
                List<OptionReply> r = c.option(option, new byte[] {1, 2, 3});
                assertThat(r).extracting(OptionReply::type).containsExactly(REP_ERR_UNSUP);
                assertThat(r.get(0).option()).isEqualTo(option);
            }
            assertThat(c.negotiate("disk", true).sizeBytes()).isEqualTo(SIZE);
        }

        @Test
        void structuredReplyWithDataIsInvalid() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(c.option(OPT_STRUCTURED_REPLY, new byte[] {0})).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_INVALID);
        }

        @Test
        void anOptionOver64KiBIsRefusedTooBigAndSkipped() throws IOException {
            NbdTestClient c = connect();
            c.start();
            c.sendOption(OPT_LIST, new byte[100_000]);
            assertThat(c.readOptionReplies()).extracting(OptionReply::type).containsExactly(REP_ERR_TOO_BIG);
            assertThat(c.option(OPT_LIST, new byte[0])).last().extracting(OptionReply::type).isEqualTo(REP_ACK);
        }

        @Test
        void anOptionClaimingGigabytesDisconnectsWithoutAllocating() throws IOException {
            NbdTestClient c = connect();
            c.start();
            c.sendOptionHeader(IHAVEOPT, OPT_INFO, 0x7ffffff0);
            assertThat(c.readToEnd()).isEmpty();
        }

        @Test
        void aBadOptionMagicDisconnects() throws IOException {
            NbdTestClient c = connect();
            c.start();
            c.sendOptionHeader(0x1234567812345678L, OPT_LIST, 0);
            assertThat(c.readToEnd()).isEmpty();
        }

        @Test
        void transmissionFlagsFollowTheExportAndTheNegotiation() throws IOException {
            ExportData rw = connect().go("disk", true);
            assertThat(rw.flags()).isEqualTo(FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM
                    | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_DF | FLAG_CAN_MULTI_CONN | FLAG_SEND_CACHE | FLAG_SEND_FAST_ZERO);
            client.close();
            ExportData roSimple = connect().go("ro", false);
            assertThat(roSimple.flags()).isEqualTo(FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH | FLAG_SEND_FUA
                    | FLAG_CAN_MULTI_CONN | FLAG_SEND_CACHE);
        }

        @Test
        void theReadOnlyConfigOverridesWritableExports() throws IOException {
            server.close();
            server = new NbdServer(exports, NbdServer.Config.defaults().withReadOnly(true));
            NbdTestClient c = connect();
            assertThat(c.go("disk", true).flags() & FLAG_READ_ONLY).isEqualTo(FLAG_READ_ONLY);
            assertThat(c.write(0, new byte[512], 0)).isEqualTo(EPERM);
        }
    }

    @Nested
    class MetaContexts {
        List<String> list(NbdTestClient c, String export, String... queries) throws IOException {
            List<OptionReply> replies = c.option(OPT_LIST_META_CONTEXT, NbdTestClient.metaRequest(export, queries));
            assertThat(replies).last().extracting(OptionReply::type).isEqualTo(REP_ACK);
            return replies.stream().filter(r -> r.type() == REP_META_CONTEXT)
                    .map(r -> new String(r.data(), 4, r.data().length - 4, StandardCharsets.UTF_8)).toList();
        }

        @Test
        void listingWithoutQueriesShowsEverything() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(list(c, "ro")).containsExactly("base:allocation", "qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1");
            assertThat(list(c, "disk")).containsExactly("base:allocation");
        }

        @Test
        void listingAcceptsNamespaceAndPrefixWildcardsAndIgnoresUnknownNamespaces() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(list(c, "ro", "base:")).containsExactly("base:allocation");
            assertThat(list(c, "ro", "qemu:")).containsExactly("qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1");
            assertThat(list(c, "ro", "qemu:dirty-bitmap:")).containsExactly("qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1");
            assertThat(list(c, "ro", "qemu:dirty-bitmap:b1", "x-foo:bar", "base:nothing")).containsExactly("qemu:dirty-bitmap:b1");
        }

        @Test
        void listingForAnUnknownExportIsErrUnknown() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(c.option(OPT_LIST_META_CONTEXT, NbdTestClient.metaRequest("nope"))).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_UNKNOWN);
        }

        @Test
        void settingNeedsStructuredRepliesFirst() throws IOException {
            NbdTestClient c = connect();
            c.start();
            assertThat(c.option(OPT_SET_META_CONTEXT, NbdTestClient.metaRequest("ro", "base:allocation")))
                    .extracting(OptionReply::type).containsExactly(REP_ERR_INVALID);
        }

        @Test
        void settingSelectsKnownExactNamesWithDistinctIdsAndIgnoresWildcardsAndUnknowns() throws IOException {
            ExportData d = connect().go("ro", true, "base:", "qemu:dirty-bitmap:b0", "nope:x", "base:allocation",
                    "qemu:dirty-bitmap:", "qemu:dirty-bitmap:zz");
            assertThat(d.contexts()).containsOnlyKeys("qemu:dirty-bitmap:b0", "base:allocation");
            assertThat(d.contexts().values()).doesNotHaveDuplicates();
        }

        @Test
        void malformedQueriesAreInvalid() throws IOException {
            NbdTestClient c = connect();
            c.start();
            c.option(OPT_STRUCTURED_REPLY, new byte[0]);
            byte[] good = NbdTestClient.metaRequest("ro", "base:allocation");
            assertThat(c.option(OPT_SET_META_CONTEXT, Arrays.copyOf(good, good.length - 2))).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_INVALID);
            byte[] trailing = Arrays.copyOf(good, good.length + 3);
            assertThat(c.option(OPT_SET_META_CONTEXT, trailing)).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_INVALID);
            byte[] manyQueries = ByteBuffer.allocate(12).putInt(2).put("ro".getBytes(StandardCharsets.UTF_8))
                    .putInt(0x7fffffff).array();
            assertThat(c.option(OPT_LIST_META_CONTEXT, Arrays.copyOf(manyQueries, 10))).extracting(OptionReply::type)
                    .containsExactly(REP_ERR_INVALID);
        }

        @Test
        void blockStatusAnswersOneChunkPerSelectedContext() throws IOException {
            ExportData d = connect().go("ro", true, "base:allocation", "qemu:dirty-bitmap:b0");
            ro.write(ByteBuffer.wrap(new byte[8192]), 0);
            Map<Integer, List<long[]>> status = client.blockStatus(0, SIZE, 0);
            assertThat(status).containsOnlyKeys(d.contexts().values());
            assertThat(status.get(d.contexts().get("base:allocation"))).containsExactly(new long[] {8192, 0},
                    new long[] {SIZE - 8192, STATE_HOLE | STATE_ZERO});
            assertThat(status.get(d.contexts().get("qemu:dirty-bitmap:b0"))).containsExactly(new long[] {MiB, 0},
                    new long[] {65536, 1}, new long[] {MiB - 65536, 0}, new long[] {MiB, 1}, new long[] {MiB, 0});
        }

        @Test
        void blockStatusWithReqOneAnswersExactlyOneExtentWithinTheRequest() throws IOException {
            ExportData d = connect().go("ro", true, "qemu:dirty-bitmap:b0");
            Map<Integer, List<long[]>> status = client.blockStatus(MiB + 4096, 3 * MiB - 4096, CMD_FLAG_REQ_ONE);
            assertThat(status.get(d.contexts().get("qemu:dirty-bitmap:b0"))).containsExactly(new long[] {65536 - 4096, 1});
            status = client.blockStatus(2 * MiB, 4096, CMD_FLAG_REQ_ONE);
            assertThat(status.get(d.contexts().get("qemu:dirty-bitmap:b0"))).containsExactly(new long[] {4096, 1});
        }

        @Test
        void blockStatusWithoutContextsOrPastTheEndIsEinval() throws IOException {
            connect().go("ro", true);
            assertThat(client.command(CMD_BLOCK_STATUS, 0, 0, 4096)).isEqualTo(EINVAL);
            client.close();
            connect().go("ro", true, "base:allocation");
            assertThat(client.command(CMD_BLOCK_STATUS, 0, SIZE - 4096, 8192)).isEqualTo(EINVAL);
            assertThat(client.command(CMD_BLOCK_STATUS, 0, 0, 0)).isEqualTo(EINVAL);
        }
    }

    @Nested
    class Commands {
        @Test
        void writeThenReadReturnsTheDataWithSimpleReplies() throws IOException {
            connect().go("disk", false);
            byte[] data = pattern(100_000, 7);
            assertThat(client.write(12345, data, 0)).isZero();
            assertThat(client.read(12345, data.length)).isEqualTo(data);
            assertThat(disk.contents(12345, data.length)).isEqualTo(data);
        }

        @Test
        void writeThenReadReturnsTheDataWithStructuredReplies() throws IOException {
            connect().go("disk", true);
            byte[] data = pattern(3 * MiB, 9);
            assertThat(client.write(MiB, data, CMD_FLAG_FUA)).isZero();
            assertThat(client.read(MiB, data.length)).isEqualTo(data);
            assertThat(client.read(MiB, 65536, CMD_FLAG_DF)).isEqualTo(Arrays.copyOf(data, 65536));
        }

        @Test
        void fuaAndFlushReachTheDevice() throws IOException {
            connect().go("disk", true);
            int before = disk.flushes;
            assertThat(client.write(0, new byte[10], CMD_FLAG_FUA)).isZero();
            assertThat(client.command(CMD_FLUSH, 0, 0, 0)).isZero();
            assertThat(disk.flushes).isEqualTo(before + 2);
        }

        @Test
        void readsPastTheEndAreEinvalAndWritesPastTheEndEnospcAndTheStreamStaysInSync() throws IOException {
            connect().go("disk", false);
            assertThat(client.command(CMD_READ, 0, SIZE - 10, 20)).isEqualTo(EINVAL);
            assertThat(client.command(CMD_READ, 0, -4096, 4096)).isEqualTo(EINVAL);
            assertThat(client.write(SIZE - 10, new byte[20], 0)).isEqualTo(ENOSPC);
            assertThat(client.command(CMD_TRIM, 0, SIZE, 4096)).isEqualTo(ENOSPC);
            assertThat(client.command(CMD_WRITE_ZEROES, 0, SIZE - 1, 2)).isEqualTo(ENOSPC);
            assertThat(client.command(CMD_CACHE, 0, SIZE, 1)).isEqualTo(EINVAL);
            assertThat(client.write(0, new byte[] {42}, 0)).isZero();
            assertThat(client.read(0, 1)).containsExactly(42);
        }

        @Test
        void errorChunksCarryTheErrorAndAMessage() throws IOException {
            connect().go("disk", true);
            long c = client.nextCookie();
            client.request(0, CMD_READ, c, SIZE, 512);
            List<Reply> replies = client.readAllReplies(c);
            assertThat(replies).hasSize(1);
            assertThat(replies.get(0).type()).isEqualTo(REPLY_TYPE_ERROR);
            assertThat(replies.get(0).errorCode()).isEqualTo(EINVAL);
            assertThat(replies.get(0).errorMessage()).contains("READ").contains("outside the export");
        }

        @Test
        void writesTrimAndZeroesToAReadOnlyExportAreEpermAndWritePayloadsAreDrained() throws IOException {
            connect().go("ro", false);
            assertThat(client.write(0, pattern(200_000, 1), 0)).isEqualTo(EPERM);
            assertThat(client.command(CMD_TRIM, 0, 0, 4096)).isEqualTo(EPERM);
            assertThat(client.command(CMD_WRITE_ZEROES, 0, 0, 4096)).isEqualTo(EPERM);
            assertThat(client.read(0, 4096)).containsOnly(0);
        }

        @Test
        void unknownCommandsAndInvalidFlagsAreEinval() throws IOException {
            connect().go("disk", false);
            assertThat(client.command(9, 0, 0, 0)).isEqualTo(EINVAL);
            assertThat(client.command(0xffff, 0, 0, 0)).isEqualTo(EINVAL);
            assertThat(client.command(CMD_FLUSH, 0x80, 0, 0)).isEqualTo(EINVAL);
            assertThat(client.command(CMD_READ, CMD_FLAG_DF, 0, 512)).as("DF without structured replies").isEqualTo(EINVAL);
            assertThat(client.command(CMD_TRIM, CMD_FLAG_NO_HOLE, 0, 512)).isEqualTo(EINVAL);
            assertThat(client.command(CMD_READ, CMD_FLAG_REQ_ONE, 0, 512)).isEqualTo(EINVAL);
            assertThat(client.command(CMD_FLUSH, 0, 0, 0)).isZero();
        }

        @Test
        void anOversizedWriteIsDrainedAndRefused() throws IOException {
            connect().go("disk", false);
            assertThat(client.write(0, new byte[32 * MiB + 1], 0)).isEqualTo(EINVAL);
            assertThat(client.command(CMD_READ, 0, 0, 32 * MiB + 1)).isEqualTo(EINVAL);
            assertThat(client.write(0, new byte[] {5}, 0)).isZero();
        }

        @Test
        void writeZeroesReadsBackAsZerosAndMayPunchHolesUnlessNoHole() throws IOException {
            connect().go("disk", true, "base:allocation");
            client.write(0, pattern(64 * 1024, 3), 0);
            assertThat(client.command(CMD_WRITE_ZEROES, 0, 0, 16384)).isZero();
            assertThat(client.command(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 16384, 16384)).isZero();
            assertThat(client.read(0, 32768)).containsOnly(0);
            assertThat(client.blockStatus(0, 65536, 0).get(0)).containsExactly(new long[] {16384, 3},
                    new long[] {65536 - 16384, 0});
        }

        @Test
        void fastZeroIsRefusedWithEnotsupWithoutChangingAnythingWhenTheDeviceCannotZeroFast() throws IOException {
            disk.fastZeroes = false;
            connect().go("disk", true);
            client.write(0, pattern(8192, 4), 0);
            assertThat(client.command(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO, 0, 8192)).isEqualTo(ENOTSUP);
            assertThat(client.read(0, 8192)).isEqualTo(pattern(8192, 4));
            disk.fastZeroes = true;
            assertThat(client.command(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO, 0, 8192)).isZero();
            assertThat(client.read(0, 8192)).containsOnly(0);
        }

        @Test
        void trimAndCacheSucceedInsideTheExport() throws IOException {
            connect().go("disk", false);
            assertThat(client.command(CMD_TRIM, CMD_FLAG_FUA, 0, MiB)).isZero();
            assertThat(client.command(CMD_CACHE, 0, 0, MiB)).isZero();
        }

        @Test
        void zeroLengthReadsSucceed() throws IOException {
            connect().go("disk", true);
            assertThat(client.command(CMD_READ, 0, 0, 0)).isZero();
            client.close();
            connect().go("disk", false);
            assertThat(client.read(0, 0)).isEmpty();
        }

        @Test
        void sparseReadsSendHolesAsOffsetHoleChunks() throws IOException {
            exports.sparseReads = true;
            connect().go("disk", true);
            byte[] data = pattern(8192, 5);
            client.write(MiB + 65536, data, 0);
            long c = client.nextCookie();
            client.request(0, CMD_READ, c, MiB, 256 * 1024);
            List<Reply> replies = client.readAllReplies(c);
            assertThat(replies).extracting(Reply::type).containsExactly(REPLY_TYPE_OFFSET_HOLE, REPLY_TYPE_OFFSET_DATA,
                    REPLY_TYPE_OFFSET_HOLE);
            assertThat(client.read(MiB, 256 * 1024)).isEqualTo(expected(256 * 1024, 65536, data));
            assertThat(client.read(MiB, 256 * 1024, CMD_FLAG_DF)).isEqualTo(expected(256 * 1024, 65536, data));
        }

        @Test
        void deviceErrorsMapToNbdErrors() throws IOException {
            connect().go("disk", true);
            disk.failWith = new BlksnapException(Errno.ENODEV, "image destroyed");
            assertThat(client.command(CMD_READ, 0, 0, 512)).isEqualTo(ESHUTDOWN);
            disk.failWith = new BlksnapException(Errno.ENOSPC, "diff storage full");
            assertThat(client.write(0, new byte[512], 0)).isEqualTo(ENOSPC);
            disk.failWith = new IllegalStateException("bug");
            assertThat(client.command(CMD_READ, 0, 0, 512)).isEqualTo(EIO);
            disk.failWith = null;
            disk.ioFailure = new IOException("medium error");
            assertThat(client.command(CMD_READ, 0, 0, 512)).isEqualTo(EIO);
            disk.ioFailure = null;
            assertThat(client.command(CMD_READ, 0, 0, 512)).isZero();
        }

        @Test
        void aBadRequestMagicDisconnects() throws IOException {
            connect().go("disk", false);
            client.send(ByteBuffer.allocate(28).putInt(0, 0x12345678));
            assertThat(client.readToEnd()).isEmpty();
        }

        @Test
        void discEndsTheConnectionAfterInFlightRequests() throws IOException {
            connect().go("disk", false);
            long c = client.nextCookie();
            client.writeRequest(0, c, 0, new byte[] {9});
            client.disconnect();
            List<Reply> replies = client.readAllReplies(c);
            assertThat(replies.get(0).errorCode()).isZero();
            assertThat(client.readToEnd()).isEmpty();
        }

        @Test
        void statsCountRequestsAndBytes() throws IOException {
            connect().go("disk", false);
            client.write(0, new byte[1000], 0);
            client.read(0, 500);
            client.command(CMD_READ, 0, SIZE, 1);
            ExportStats s = server.stats().get("disk");
            assertThat(s.requests()).isEqualTo(3);
            assertThat(s.errors()).isEqualTo(1);
            assertThat(s.bytesWritten()).isEqualTo(1000);
            assertThat(s.bytesRead()).isEqualTo(500);
            assertThat(s.connections()).isEqualTo(1);
        }
    }

    static byte[] expected(int length, int at, byte[] data) {
        byte[] e = new byte[length];
        System.arraycopy(data, 0, e, at, data.length);
        return e;
    }

    static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (i * 31 + seed + (i >>> 9));
        }
        return b;
    }
}
