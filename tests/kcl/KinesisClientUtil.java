package software.amazon.kinesis.common;

import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClientBuilder;

/**
 * Test-only replacement of KCL's class of the same name, put first on the class path.
 *
 * KCL builds its Kinesis client for HTTP/2 only (enhanced fan-out needs it); the emulator
 * speaks HTTP/1.1 over plain http, so every Kinesis call fails with "First received frame was
 * not SETTINGS". Polling (retrievalMode = POLLING) works over HTTP/1.1, so this builds that.
 */
public class KinesisClientUtil {
    public static KinesisAsyncClient createKinesisAsyncClient(KinesisAsyncClientBuilder builder) {
        return adjustKinesisClientBuilder(builder).build();
    }

    public static KinesisAsyncClientBuilder adjustKinesisClientBuilder(
            KinesisAsyncClientBuilder builder) {
        return builder.httpClientBuilder(
                NettyNioAsyncHttpClient.builder()
                        .maxConcurrency(Integer.MAX_VALUE)
                        .protocol(Protocol.HTTP1_1));
    }
}
