//! The ABI the fake chain speaks (the crate's own bindings are private).

#![allow(clippy::too_many_arguments)]

alloy::sol! {
    interface Escrow {
        function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32 channelId);
        function settle(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;
        function topUp(bytes32 channelId, uint256 additionalDeposit) external;
        function close(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;

        event ChannelOpened(bytes32 indexed channelId, address indexed payer, address indexed payee, address token, address authorizedSigner, bytes32 salt, uint256 deposit);
        event Settled(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 cumulativeAmount, uint256 deltaPaid, uint256 newSettled);
        event TopUp(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 additionalDeposit, uint256 newDeposit);
        event ChannelClosed(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 settledToPayee, uint256 refundedToPayer);
    }

    interface Reserve {
        struct Descriptor {
            address payer;
            address payee;
            address operator;
            address token;
            bytes32 salt;
            address authorizedSigner;
            bytes32 expiringNonceHash;
        }

        function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32 channelId);
        function settle(Descriptor descriptor, uint96 cumulativeAmount, bytes signature) external;
        function topUp(Descriptor descriptor, uint96 additionalDeposit) external;
        function close(Descriptor descriptor, uint96 cumulativeAmount, uint96 captureAmount, bytes signature) external;

        event ChannelOpened(bytes32 indexed channelId, address indexed payer, address indexed payee, address operator, address token, address authorizedSigner, bytes32 salt, bytes32 expiringNonceHash, uint96 deposit);
        event Settled(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 cumulativeAmount, uint96 deltaPaid, uint96 newSettled);
        event TopUp(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 additionalDeposit, uint96 newDeposit);
        event ChannelClosed(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 settledToPayee, uint96 refundedToPayer);
    }

    interface Token {
        function approve(address spender, uint256 amount) external returns (bool);
    }
}
