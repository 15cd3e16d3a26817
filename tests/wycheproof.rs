//! Wycheproof vectors through murmur's own crypto wrappers: every AES-256-GCM
//! case with a 96-bit IV and a 128-bit tag, and every HKDF-SHA-256 case.

use murmur::crypto::{aead_open, aead_seal, hkdf_sha256};
use wycheproof::{aead, hkdf, TestResult};

#[test]
fn aes_256_gcm_with_96_bit_ivs() {
    let set = aead::TestSet::load(aead::TestName::AesGcm).expect("AES-GCM vectors");
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for test in group.tests {
            let key: [u8; 32] = test.key[..].try_into().unwrap();
            let nonce: [u8; 12] = test.nonce[..].try_into().unwrap();
            let mut sealed = test.ct.to_vec();
            sealed.extend_from_slice(&test.tag);
            let opened = aead_open(&key, &nonce, &test.aad, &sealed);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(
                        aead_seal(&key, &nonce, &test.aad, &test.pt),
                        sealed,
                        "seal, case {}",
                        test.tc_id
                    );
                    assert_eq!(opened.as_deref(), Ok(&test.pt[..]), "open, case {}", test.tc_id);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(
                        opened.is_err(),
                        "case {} ({:?}) must not open",
                        test.tc_id,
                        test.comment
                    );
                    invalid += 1;
                }
            }
        }
    }
    assert!(
        valid >= 20 && invalid >= 10,
        "only {valid} valid and {invalid} invalid cases ran"
    );
}

#[test]
fn hkdf_sha_256() {
    let set = hkdf::TestSet::load(hkdf::TestName::HkdfSha256).expect("HKDF vectors");
    let mut ran = 0;
    for group in set.test_groups {
        for test in group.tests {
            let mut out = vec![0u8; test.size];
            let result = hkdf_sha256(&test.salt, &test.ikm, &test.info, &mut out);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert!(result.is_ok(), "case {}", test.tc_id);
                    assert_eq!(out, test.okm.to_vec(), "case {}", test.tc_id);
                }
                TestResult::Invalid => assert!(result.is_err(), "case {} must fail", test.tc_id),
            }
            ran += 1;
        }
    }
    assert!(ran >= 50, "only {ran} cases ran");
}
