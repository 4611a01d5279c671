use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
fn t<F: FnMut() -> Tensor<2>>(name: &str, mut f: F) {
    let r = f();
    let _ = r.to_data();
    let n = 10;
    let t0 = Instant::now();
    for _ in 0..n {
        let r = f();
        let _ = r.into_data();
    }
    println!(
        "{name}: {:.2} ms",
        t0.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
fn main() {
    let d = Device::flex();
    let (b, di, m) = (1024, 256, 2048);
    let x = Tensor::<2>::random([b, di], Distribution::Default, &d);
    let w = Tensor::<2>::random([di, m], Distribution::Default, &d);
    let wd = Tensor::<2>::random([m, di], Distribution::Default, &d);
    let z = Tensor::<2>::random([b, m], Distribution::Default, &d);
    let bias = Tensor::<1>::random([m], Distribution::Default, &d);
    t("x@W_enc", || x.clone().matmul(w.clone()));
    t("x@W_enc again", || x.clone().matmul(w.clone()));
    t("(W_enc^T@x^T)", || {
        w.clone().transpose().matmul(x.clone().transpose())
    });
    t("f@W_dec", || z.clone().matmul(wd.clone()));
    t("f^T@dx", || z.clone().transpose().matmul(x.clone()));
    t("dx@W_dec^T", || x.clone().matmul(wd.clone().transpose()));
    t("x^T@gz", || x.clone().transpose().matmul(z.clone()));
    t("z+bias", || z.clone() + bias.clone().unsqueeze_dim::<2>(0));
    t("z-theta expand", || {
        z.clone() - bias.clone().unsqueeze_dim::<2>(0).expand([b, m])
    });
    t("greater_elem.float", || z.clone().greater_elem(0.0).float());
    t("mask_fill", || {
        let mk = z.clone().greater_elem(0.0);
        z.clone().mask_fill(mk, 0.0)
    });
    t("abs", || z.clone().abs());
    t("mul scalar", || z.clone() * 2.0);
    t("sum_dim0", || z.clone().sum_dim(0));
    t("square", || z.clone().square());
}
